"""Model inputs: images spliced into the token sequence where their task placed them (several per
sample, none, at the end), padding kept out of the mask, and the loss scoring exactly the loss
tokens from the outputs one position before them. Pure tensors, no model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainers.inputs import Example, collate, scored, splice, token_loss

Q, D = 3, 4  # visual tokens per image, embedding width


def _examples() -> list[Example]:
    image = torch.zeros(3, 8, 8)
    return [
        Example([11, 12, 13, 14, 15], [0, 0, 0, 1, 1], [image, image], [0, 3]),  # two images, one first
        Example([21, 22, 23], [0, 1, 1], [], []),  # text only, in a batch with images
        Example([31, 32], [0, 1], [image], [2]),  # an image after the last token
        Example([41, 42, 43, 44], [0, 0, 1, 1], [image, image], [2, 2]),  # two images in a row
    ]


def _by_hand(examples, token_embeds, visual):
    """Each sample's sequence built piece by piece: (embeds, where each token went) per sample."""
    rows, positions, image = [], [], 0
    for b, e in enumerate(examples):
        pieces, where, length = [], [], 0
        for t in range(len(e.ids) + 1):
            for p in e.image_positions:
                if p == t:
                    pieces.append(visual[image])
                    image += 1
                    length += Q
            if t < len(e.ids):
                pieces.append(token_embeds[b, t][None])
                where.append(length)
                length += 1
        rows.append(torch.cat(pieces))
        positions.append(where)
    return rows, positions


def test_splice_places_every_image_where_its_task_put_it():
    examples = _examples()
    inputs = collate(examples, pad_id=0)
    assert inputs.ids.shape == (4, 5) and inputs.max_images == 2 and inputs.pixels.shape == (5, 3, 8, 8)
    assert inputs.image_sample.tolist() == [0, 0, 2, 3, 3] and inputs.image_position.tolist() == [0, 3, 2, 2, 2]
    assert inputs.loss_columns == (1, 5)
    token_embeds = torch.randn(4, 5, D)
    visual = torch.randn(5, Q, D)
    embeds, mask, text_positions = splice(token_embeds, visual, inputs)
    assert embeds.shape == (4, 5 + 2 * Q, D)
    rows, positions = _by_hand(examples, token_embeds, visual)
    for b, (row, where) in enumerate(zip(rows, positions)):
        assert torch.equal(embeds[b, : len(row)], row), b
        assert mask[b].tolist() == [1] * len(row) + [0] * (embeds.shape[1] - len(row)), b
        assert text_positions[b, : len(where)].tolist() == where, b


def test_loss_scores_the_loss_tokens_from_the_outputs_before_them():
    examples = _examples()
    inputs = collate(examples, pad_id=0)
    _, _, text_positions = splice(torch.zeros(4, 5, D), torch.zeros(5, Q, D), inputs)
    vocab = 50
    logits = torch.randn(4, 5 + 2 * Q, vocab)
    loss = token_loss(scored(logits, inputs, text_positions), inputs)
    _, positions = _by_hand(examples, torch.zeros(4, 5, D), torch.zeros(5, Q, D))
    expected = [F.cross_entropy(logits[b, positions[b][t] - 1][None], torch.tensor([e.ids[t]]))
                for b, e in enumerate(examples) for t in range(len(e.ids)) if e.loss_mask[t]]
    assert len(expected) == 2 + 2 + 1 + 2
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-6)


def test_gradients_reach_tokens_and_images():
    inputs = collate(_examples(), pad_id=0)
    token_embeds = torch.randn(4, 5, D, requires_grad=True)
    visual = torch.randn(5, Q, D, requires_grad=True)
    embeds, _, text_positions = splice(token_embeds, visual, inputs)
    token_loss(scored(embeds @ torch.randn(D, 50), inputs, text_positions), inputs).backward()
    # Without attention only the output right before a loss token matters: the last visual token of
    # images 1 (before token 3 of sample 0) and 4 (the second of two, before token 2 of sample 3).
    assert visual.grad.abs().sum(dim=2).gt(0).tolist() == [[False] * Q, [False] * (Q - 1) + [True],
                                                            [False] * Q, [False] * Q, [False] * (Q - 1) + [True]]
    assert token_embeds.grad.abs().sum(dim=2).gt(0).tolist() == [[False, False, False, True, False],
                                                                 [True, True, False, False, False],
                                                                 [True, False, False, False, False],
                                                                 [False, False, True, False, False]]


def test_examples_are_checked():
    image = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match="sequence order"):
        Example([1, 2, 3], [0, 1, 1], [image, image], [2, 1])
    with pytest.raises(ValueError, match="within 0..3"):
        Example([1, 2, 3], [0, 1, 1], [image], [4])
    with pytest.raises(ValueError, match="first token"):
        Example([1, 2], [1, 1], [image], [1])
    with pytest.raises(ValueError, match="one loss_mask entry per token"):
        Example([1, 2], [0], [], [])
    with pytest.raises(ValueError, match="at least one image"):
        collate([Example([1, 2], [0, 1], [], [])], pad_id=0)
    assert Example([1, 2], [1, 1], [image], [0]).loss_mask == [1, 1]  # an image first predicts token 0


def test_inputs_move_between_devices_with_their_plain_fields():
    inputs = collate(_examples(), pad_id=0)
    moved = inputs.to("cpu")
    assert moved.max_images == 2 and moved.loss_columns == (1, 5) and moved.ids.equal(inputs.ids)
