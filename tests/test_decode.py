"""Greedy and beam-search decoding (trainers/decode.py) against brute force over every sequence,
with a next-token distribution that depends on the whole prefix. The captioner that uses them is
tested in test_trainer_loop.py."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from trainers.decode import beam_search, greedy

VOCAB, EOS, MAX_NEW = 4, 3, 4


def _model(seed: int, batch: int):
    """next_logprobs for `batch` examples: each (example, prefix) gets its own random distribution,
    so the best sequence is often not the greedy one."""

    def next_logprobs(rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        out = []
        for row, prefix in zip(rows.tolist(), ids.tolist()):
            g = torch.Generator().manual_seed(hash((seed, row, *prefix)) % 2**62)
            logits = 2 * torch.randn(VOCAB, generator=g)
            logits[EOS] -= 2  # longer sequences: more room for greedy to go wrong
            out.append(logits.log_softmax(-1))
        return torch.stack(out)

    return next_logprobs


def _score(next_logprobs, example: int, tokens: list[int]) -> float:
    """Summed log-prob of `tokens` for one example, one step at a time."""
    total = 0.0
    for t in range(len(tokens)):
        lp = next_logprobs(torch.tensor([example]), torch.tensor([tokens[:t]], dtype=torch.long))
        total += float(lp[0, tokens[t]])
    return total


def _every_sequence() -> list[list[int]]:
    """Every possible output: k non-EOS tokens then EOS (k < MAX_NEW), or MAX_NEW non-EOS tokens."""
    words = [t for t in range(VOCAB) if t != EOS]
    out = [list(s) + [EOS] for k in range(MAX_NEW) for s in itertools.product(words, repeat=k)]
    return out + [list(s) for s in itertools.product(words, repeat=MAX_NEW)]


@pytest.mark.parametrize("seed", range(8))
def test_exhaustive_beam_search_finds_the_most_likely_sequence(seed):
    model = _model(seed, batch=2)
    found = beam_search(model, batch=2, beams=VOCAB ** MAX_NEW, max_new_tokens=MAX_NEW, eos_id=EOS,
                        length_penalty=0.0)
    for example in range(2):
        scores = {tuple(s): _score(model, example, s) for s in _every_sequence()}
        best = max(scores, key=scores.get)
        assert found[example] == [t for t in best if t != EOS]
        assert math.isclose(scores[best], max(scores.values()))


@pytest.mark.parametrize("seed", range(8))
def test_greedy_takes_the_argmax_each_step(seed):
    model = _model(seed, batch=3)
    found = greedy(model, batch=3, max_new_tokens=MAX_NEW, eos_id=EOS)
    for example in range(3):
        tokens: list[int] = []
        while len(tokens) < MAX_NEW:
            nxt = int(model(torch.tensor([example]), torch.tensor([tokens], dtype=torch.long)).argmax())
            if nxt == EOS:
                break
            tokens.append(nxt)
        assert found[example] == tokens


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_a_batch_decodes_as_its_examples_do_alone(length_penalty):
    model = _model(7, batch=4)
    together = beam_search(model, batch=4, beams=3, max_new_tokens=MAX_NEW, eos_id=EOS, length_penalty=length_penalty)
    for example in range(4):
        def alone(rows, ids, example=example):
            return model(torch.full_like(rows, example), ids)

        assert beam_search(alone, batch=1, beams=3, max_new_tokens=MAX_NEW, eos_id=EOS,
                           length_penalty=length_penalty) == [together[example]]


def test_wider_beams_never_score_lower_when_exhaustive_is_reached():
    model = _model(11, batch=1)
    narrow = beam_search(model, 1, 2, MAX_NEW, EOS, length_penalty=0.0)[0]
    wide = beam_search(model, 1, VOCAB ** MAX_NEW, MAX_NEW, EOS, length_penalty=0.0)[0]

    def full(seq):
        return seq + [EOS] if len(seq) < MAX_NEW else seq

    assert _score(model, 0, full(wide)) >= _score(model, 0, full(narrow))
    with pytest.raises(ValueError, match="beams"):
        beam_search(model, 1, 0, MAX_NEW, EOS)
