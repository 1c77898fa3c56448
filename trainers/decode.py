"""Greedy and beam-search decoding for models that are not transformers' `generate` (the stage-1
captioner's tiny LM). The model is a function `next_logprobs(rows, ids) -> (N, V)` log-probabilities
of the next token, where `rows` says which example of the batch each sequence in `ids` belongs to
(so the caller can pick that example's visual prefix). No KV cache: captions are a few dozen tokens
and the tiny LM is small, so recomputing the prefix each step keeps this obviously correct.

Beam search keeps, per example, the `beams` best live sequences by summed log-probability; a
sequence that emits EOS is finished and scored sum / length ** length_penalty (transformers'
convention, EOS counted in the length). An example stops when it has `beams` finished sequences and
no live one can still beat the worst of them: exact for length_penalty 0 (log-probs only fall as a
sequence grows), transformers' heuristic otherwise. At max_new_tokens live sequences are finished.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

NextLogprobs = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def greedy(next_logprobs: NextLogprobs, batch: int, max_new_tokens: int, eos_id: int,
           device: torch.device | str = "cpu") -> list[list[int]]:
    """The argmax token at every step, until EOS (not returned) or max_new_tokens."""
    rows = torch.arange(batch, device=device)
    ids = torch.empty(batch, 0, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        nxt = next_logprobs(rows, ids).argmax(-1)
        nxt = nxt.masked_fill(done, eos_id)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return [_until_eos(row.tolist(), eos_id) for row in ids]


@torch.no_grad()
def beam_search(next_logprobs: NextLogprobs, batch: int, beams: int, max_new_tokens: int, eos_id: int,
                length_penalty: float = 1.0, device: torch.device | str = "cpu") -> list[list[int]]:
    """The best finished sequence per example (EOS not returned); see the module docstring."""
    if beams < 1:
        raise ValueError(f"beams must be >= 1, got {beams}")
    # Live beams of every unfinished example, flattened: example row, token ids, summed log-prob.
    rows = torch.arange(batch, device=device)
    ids = torch.empty(batch, 0, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    for step in range(max_new_tokens):
        candidates = scores[:, None] + next_logprobs(rows, ids).float()  # (N, V)
        vocab, length = candidates.shape[1], step + 1
        new_rows, new_ids, new_scores = [], [], []
        for b in rows.unique().tolist():
            mine = (rows == b).nonzero().flatten()
            top = candidates[mine].flatten().topk(min(2 * beams, mine.numel() * vocab))
            live = []  # best first, as topk returns them
            for score, index in zip(top.values.tolist(), top.indices.tolist()):
                parent, token = int(mine[index // vocab]), index % vocab
                if token == eos_id:
                    finished[b].append((score / length ** length_penalty, ids[parent].tolist()))
                    continue
                live.append((score, torch.cat([ids[parent], ids.new_tensor([token])])))
                if len(live) == beams:
                    break
            finished[b] = sorted(finished[b], key=lambda f: -f[0])[:beams]
            # Done when no live beam can still beat the worst kept finished one: exact for a penalty
            # of 0 (log-probs only fall), transformers' heuristic (score at today's length) otherwise.
            best_live = live[0][0] / length ** length_penalty if live else float("-inf")
            if not live or (len(finished[b]) == beams and finished[b][-1][0] >= best_live):
                continue
            new_rows += [b] * len(live)
            new_scores += [score for score, _ in live]
            new_ids += [seq for _, seq in live]
        if not new_rows:
            break
        rows = torch.tensor(new_rows, device=device)
        ids = torch.stack(new_ids)
        scores = torch.tensor(new_scores, device=device)
    else:
        for r, seq, s in zip(rows.tolist(), ids.tolist(), scores.tolist()):
            finished[r].append((s / len(seq) ** length_penalty, seq))
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


def _until_eos(tokens: list[int], eos_id: int) -> list[int]:
    return tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens
