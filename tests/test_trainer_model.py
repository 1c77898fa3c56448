"""The adapter VLM's parts: shapes and masks of each adapter, frozen parts stay frozen and
bit-identical, the loss counts caption tokens only, and stage 1 feeds stage 2."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from trainers.adapters import LinearAdapter, MLPAdapter, PerceiverAdapter, VAdapter
from trainers.captioner import Captioner
from trainers.llm import FrozenLLM
from trainers.tasks import CaptioningTask, Record
from trainers.tasks.captioning import VISUAL
from trainers.tiny_lm import TinyLM
from trainers.vision import VisionEncoder
from trainers.vlm import AdapterVLM


@pytest.fixture(scope="module")
def parts(tiny_clip, tmp_path_factory):
    from tests.tiny_llm import write_tiny_llm

    vision = VisionEncoder(tiny_clip["name"], tiny_clip["pretrained"], tiny_clip["config_dir"])
    llm = FrozenLLM(write_tiny_llm(tmp_path_factory.mktemp("llm")))
    return vision, llm


def _adapters(vision_width: int, llm_width: int):
    return {
        "linear": LinearAdapter(vision_width, llm_width),
        "mlp": MLPAdapter(vision_width, llm_width),
        "perceiver": PerceiverAdapter(vision_width, llm_width, width=32, layers=2, queries=8, heads=4),
        "vadapter": VAdapter(vision_width, llm_width, TinyLM(50, width=32, layers=2, heads=4, max_len=16),
                             queries=8, heads=4),
    }


def test_adapter_shapes(parts):
    vision, llm = parts
    pixels = torch.randn(3, 3, 64, 64)
    tokens = vision(pixels)
    assert tokens.shape == (3, 16, vision.width)  # 64 / 16 = 4 x 4 patches
    for kind, adapter in _adapters(vision.width, llm.width).items():
        out = adapter(tokens)
        expected = 16 if kind in ("linear", "mlp") else 8
        assert out.shape == (3, expected, llm.width), kind


def _task(llm, prompt: str = "Describe the following: <visual> :") -> CaptioningTask:
    return CaptioningTask(llm.tokenizer, preprocess=lambda image: image, prompt=prompt)  # images: random tensors


def _batch(llm, n=3, prompt: str = "Describe the following: <visual> :"):
    """ModelInputs of n captions of different lengths (so with padding), each with a random image."""
    captions = ["a red circle on a blue background", "a star", "the large green square"]
    task = _task(llm, prompt)
    images = torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(n))
    return task.collate([task.encode(Record(f"k{i}", [image], caption, []))
                         for i, (image, caption) in enumerate(zip(images, captions))])


@pytest.mark.parametrize("kind", ["linear", "mlp", "perceiver", "vadapter"])
def test_frozen_parts_get_no_gradient_and_stay_identical(parts, kind):
    vision, llm = parts
    model = AdapterVLM(vision, _adapters(vision.width, llm.width)[kind], llm)
    frozen_before = {n: p.detach().clone() for n, p in [*vision.named_parameters(), *llm.named_parameters()]}
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    for _ in range(2):
        optimizer.zero_grad()
        loss = model(_batch(llm))
        loss.backward()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trainable_parameters())
    assert all(p.grad is None for p in [*vision.parameters(), *llm.parameters()])
    assert all(torch.equal(p, frozen_before[n]) for n, p in [*vision.named_parameters(), *llm.named_parameters()])
    assert not llm.model.training and not vision.visual.training


def test_loss_counts_caption_tokens_only(parts):
    vision, llm = parts
    model = AdapterVLM(vision, LinearAdapter(vision.width, llm.width), llm).eval()
    task, inputs = _task(llm), _batch(llm, n=2)
    before, after, prompt = len(task.before), len(task.after), len(task.before) + len(task.after)
    ids, mask = inputs.ids[:, prompt:], inputs.attention_mask[:, prompt:]  # the captions, right-padded
    assert mask.sum(1).tolist() == [8, 3] and inputs.loss_mask[:, prompt:].equal(mask)  # captions with <eos>
    with torch.no_grad():
        loss = model(inputs)
        # Changing padded positions' ids must not change the loss.
        garbage = replace(inputs, ids=inputs.ids.masked_fill(inputs.attention_mask == 0, 5))
        assert torch.allclose(loss, model(garbage))
        # The spliced sequence is [prompt before ; 16 visual tokens ; prompt after ; caption].
        embeds, full_mask, _ = model.embed_inputs(inputs)
        visual = model.visual_embeds(inputs.pixels)
        expected = torch.cat([llm.embed(inputs.ids[:, :before]), visual, llm.embed(inputs.ids[:, before:])], dim=1)
        assert torch.equal(embeds, expected)
        assert torch.equal(full_mask, torch.cat([torch.ones(2, before + 16, dtype=torch.long),
                                                 inputs.attention_mask[:, before:]], dim=1))
        # The loss computed by hand from the logits.
        logits = llm(embeds, full_mask)
        p = before + 16 + after
        losses = []
        for b in range(2):
            for t in range(ids.shape[1]):
                if mask[b, t]:
                    losses.append(torch.nn.functional.cross_entropy(logits[b, p - 1 + t][None], ids[b, t][None]))
        assert torch.allclose(loss, torch.stack(losses).mean(), atol=1e-6)


def test_prompt_must_mark_the_visual_tokens(parts):
    _, llm = parts
    with pytest.raises(ValueError, match="<visual>"):
        _task(llm, prompt="Describe:")


def test_stage_one_captioner_trains_the_tiny_lm_that_stage_two_reuses(parts):
    vision, llm = parts
    tiny = TinyLM(llm.vocab_size, width=32, layers=2, heads=4, max_len=32)
    captioner = Captioner(vision, tiny, queries=4, heads=4)
    loss = captioner(_batch(llm, prompt=VISUAL))  # stage 1 captions from the image alone
    loss.backward()
    assert tiny.blocks[0].attn.q.weight.grad is not None and all(p.grad is None for p in vision.parameters())
    stage2 = VAdapter(vision.width, llm.width, TinyLM(llm.vocab_size, width=32, layers=2, heads=4, max_len=32),
                      queries=8, heads=4)
    stage2.tiny_lm.load_state_dict(tiny.state_dict())
    assert torch.equal(stage2.tiny_lm.blocks[1].mlp.fc.weight, tiny.blocks[1].mlp.fc.weight)
    assert AdapterVLM(vision, stage2, llm)(_batch(llm)).isfinite()


def test_untrained_captioner_starts_near_uniform_loss(parts):
    """A fresh tiny LM must not be confidently wrong: its first loss is ~ln(vocab), not tens."""
    import math

    vision, llm = parts
    captioner = Captioner(vision, TinyLM(llm.vocab_size, width=256, layers=2, heads=4, max_len=32), queries=4, heads=4)
    with torch.no_grad():
        loss = float(captioner(_batch(llm, prompt=VISUAL)))
    assert abs(loss - math.log(llm.vocab_size)) < 0.5, loss


def test_a_vision_checkpoint_that_does_not_load_is_one_line_naming_the_key(tiny_clip, tmp_path):
    """It was torch's traceback (with its advice to unpickle a refused file) or a state-dict dump."""
    from filters.clip_model import ClipWeightsError
    from tests.tiny_clip import TINY_CONFIG, write_clip_checkpoint

    wider = write_clip_checkpoint(tmp_path / "wider", name="vlcurate-wider-clip", config={**TINY_CONFIG, "embed_dim": 48})
    (tmp_path / "text.pt").write_text("not a checkpoint")
    for path, problem in [(wider["pretrained"], "does not fit the architecture vlcurate-tiny-clip"),
                          (str(tmp_path / "text.pt"), "is not a checkpoint of tensors")]:
        with pytest.raises(ClipWeightsError, match=problem) as caught:
            VisionEncoder(tiny_clip["name"], path, tiny_clip["config_dir"])
        assert str(caught.value).startswith("vision.pretrained ") and "\n" not in str(caught.value)
