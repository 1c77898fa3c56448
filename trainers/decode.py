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
    # Live beams of all examples, flattened: (example row, token ids, summed log-prob).
    rows = torch.arange(batch, device=device)
    ids = torch.empty(batch, 0, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    open_ = set(range(batch))
    for step in range(max_new_tokens):
        candidates = scores[:, None] + next_logprobs(rows, ids).float()  # (N, V)
        length = step + 1
        keep_rows, keep_ids, keep_scores = [], [], []
        for b in sorted(open_):
            mine = (rows == b).nonzero().flatten()
            flat = candidates[mine].flatten()
            top = flat.topk(min(2 * beams, flat.numel()))
            live = 0
            for score, index in zip(top.values.tolist(), top.indices.tolist()):
                parent, token = mine[index // candidates.shape[1]], index % candidates.shape[1]
                if token == eos_id:
                    finished[b].append((score / length ** length_penalty, ids[parent].tolist()))
                    continue
                keep_rows.append(b)
                keep_ids.append(torch.cat([ids[parent], ids.new_tensor([token])]))
                keep_scores.append(score)
                live += 1
                if live == beams:
                    break
            finished[b] = sorted(finished[b], key=lambda f: -f[0])[:beams]
            best_live = max((s for r, s in zip(keep_rows, keep_scores) if r == b), default=float("-inf"))
            if len(finished[b]) == beams and finished[b][-1][0] >= _bound(best_live, length, length_penalty):
                open_.discard(b)
        open_ &= set(keep_rows)
        kept = [i for i, r in enumerate(keep_rows) if r in open_]
        if not kept:
            break
        rows = torch.tensor([keep_rows[i] for i in kept], device=device)
        ids = torch.stack([keep_ids[i] for i in kept])
        scores = torch.tensor([keep_scores[i] for i in kept], device=device)
    else:
        for r, seq, s in zip(rows.tolist(), ids.tolist(), scores.tolist()):
            finished[r].append((s / len(seq) ** length_penalty, seq))
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


def _bound(best_live: float, length: int, length_penalty: float) -> float:
    """The best score a live sequence could still reach (log-probs only fall): exact when the
    penalty is 0; for a positive penalty, transformers' heuristic of scoring it at today's length."""
    if best_live == float("-inf"):
        return best_live
    return best_live / length ** length_penalty


def _until_eos(tokens: list[int], eos_id: int) -> list[int]:
    return tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens
