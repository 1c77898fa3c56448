"""trainers/flops.py against torch's own FLOP counter on real training steps (models built by
build_model, every adapter kind and the stage-1 captioner, one and two images per sample), and the
datasheet peaks MFU is relative to."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from tests.trainer_batches import mixed_caption_batch
from trainers.captioner import Captioner
from trainers.config import config_from_dict
from trainers.flops import sample_flops
from trainers.schedule import PEAK_ENV, estimate_flops_per_sample, peak_flops, peak_spec

CASES = [("vlm", "linear"), ("vlm", "mlp"), ("vlm", "perceiver"), ("vlm", "vadapter"), ("captioner", "vadapter")]

aten = torch.ops.aten
# torch's counter table lacks the CPU's fused attention kernel: count it with torch's own formulas
# for the CUDA kernels (the same matmuls, QK^T recomputed in backward).
_CPU_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v),
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda grad, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(grad, q, k, v),
}


@contextmanager
def _counted():
    """torch's counter, seeing every matmul that runs: nn.MultiheadAttention's inference fast path
    (the frozen ViT's, one op the counter has no formula for) is turned off, so its projections and
    attention run as the ops they are."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
            yield counter
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def paths(tiny_clip, tmp_path_factory):
    """The tiny CLIP, and a tiny LLM whose LM head is tied to its input embedding, as SmolLM2's is."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_llm import write_tiny_llm

    llm = write_tiny_llm(tmp_path_factory.mktemp("llm"))
    config = LlamaConfig.from_pretrained(llm)
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(llm)
    return tiny_clip, llm


def _model(paths, stage: str, kind: str):
    from trainers.build import build_model

    clip, llm = paths
    config = config_from_dict({
        "run": {"stage": stage},
        "vision": {"name": clip["name"], "pretrained": clip["pretrained"], "config_dir": clip["config_dir"]},
        "llm": {"path": llm},
        "adapter": {"kind": kind, "queries": 8, "width": 32, "layers": 2, "heads": 4,
                    "tiny_lm": {"width": 32, "layers": 2, "heads": 4, "max_len": 64}},
    })
    model, _, tokenizer, _ = build_model(config)
    assert model.vision.tokens == 16  # 64 x 64 pixels in 16 x 16 patches
    if stage == "vlm":
        hf = model.llm.model
        assert hf.get_output_embeddings().weight is hf.get_input_embeddings().weight  # tied
    return model.train(), tokenizer


def _batch(tokenizer, stage: str, images: int):
    return mixed_caption_batch(tokenizer, images, prompt=stage == "vlm")


def _counted_parts(model, inputs) -> tuple[dict[str, float], dict[str, float], float]:
    """From torch's counter, for the batch: each component's forward in the training step (by
    module), each component's forward + backward (the frozen vision tower's forward and the trainable
    adapter's or pooler's step, counted alone; the LLM or tiny LM is the rest), and the step's total."""
    with _counted() as counter:
        loss = model(inputs)  # one training step, as trainers/train.py runs it
    forward = counter.get_flop_counts()
    with _counted() as backward:
        loss.backward()
    step = counter.get_total_flops() + backward.get_total_flops()

    first, middle, last = ("vision", "pooler", "tiny_lm") if isinstance(model, Captioner) else ("vision", "adapter", "llm")
    top = type(model).__name__
    forwards = {name: sum(forward[f"{top}.{name}"].values()) for name in (first, middle)}
    # The captioner calls its tiny LM's methods (encode, logits), never the module: no entry of its own.
    forwards[last] = counter.get_total_flops() - sum(forwards.values())

    with _counted() as counter:
        tokens = model.vision(inputs.pixels)
    totals = {first: counter.get_total_flops()}
    with _counted() as counter:
        out = getattr(model, middle)(tokens)
        out.backward(torch.ones_like(out))  # the gradient the step hands it is dense too
    totals[middle] = counter.get_total_flops()
    totals[last] = step - totals[first] - totals[middle]
    return forwards, totals, step


@pytest.mark.parametrize("images", [1, 2])
@pytest.mark.parametrize("stage,kind", CASES)
def test_flops_match_torch_counter_on_a_training_step(paths, stage, kind, images):
    model, tokenizer = _model(paths, stage, kind)
    inputs = _batch(tokenizer, stage, images)
    forwards, totals, step = _counted_parts(model, inputs)
    counted = {name: flops / inputs.batch_size for name, flops in totals.items()}
    flops = sample_flops(model, inputs)
    assert list(flops.parts) == list(counted)
    assert flops.total == pytest.approx(step / inputs.batch_size, rel=0.05)
    for name, part in flops.parts.items():
        assert part.total == pytest.approx(counted[name], rel=0.05), name
        assert part.forward == pytest.approx(forwards[name] / inputs.batch_size, rel=0.05), name
    assert flops.parts["vision"].backward == 0  # frozen, under no_grad
    assert estimate_flops_per_sample(model, inputs) == flops.total


@pytest.mark.parametrize("full_logits", [None, "soft-capped logits, say"])
def test_llm_head_is_counted_where_it_runs(paths, full_logits):
    """The LM head runs on the scored positions only, or on every position for an LLM whose logits
    are more than its head's output (trainers/llm.py FrozenLLM.logits_at): counted either way. The
    tiny LLM's head is a few percent of its FLOPs, so this compares the LLM part tightly."""
    model, tokenizer = _model(paths, "vlm", "linear")
    assert model.llm.full_logits is None  # Llama
    model.llm.full_logits = full_logits
    inputs = _batch(tokenizer, "vlm", 2)
    forwards, totals, _ = _counted_parts(model, inputs)
    llm = sample_flops(model, inputs).parts["llm"]
    assert llm.forward == pytest.approx(forwards["llm"] / inputs.batch_size, rel=1e-3)
    assert llm.total == pytest.approx(totals["llm"] / inputs.batch_size, rel=1e-3)
    head = model.llm.model.get_output_embeddings().weight.numel()
    length = inputs.ids.shape[1] + model.vision.tokens * inputs.max_images
    first, last = inputs.loss_columns
    model.llm.full_logits = "soft-capped logits, say" if full_logits is None else None
    other = sample_flops(model, inputs).parts["llm"]
    # Forward and input gradient: 2 matmuls of 2 * V * D per position.
    assert abs(llm.total - other.total) == pytest.approx(2 * 2 * head * (length - (last - first)), rel=1e-9)


def test_peaks_match_device_names_exactly():
    l4, l40, l40s = peak_spec("NVIDIA L4"), peak_spec("NVIDIA L40"), peak_spec("NVIDIA L40S")
    assert (l4.flops, l40.flops, l40s.flops) == (121e12, 181.05e12, 362.05e12)
    assert peak_spec("NVIDIA A10").flops == 125e12
    assert peak_spec("NVIDIA A10G") is None  # no NVIDIA datasheet figure: no MFU rather than the A10's
    h100 = peak_spec("NVIDIA H100 80GB HBM3")
    assert h100.flops == 989.4e12 and h100.name == "NVIDIA H100 SXM5 dense BF16, 989.4 TFLOP/s"
    assert peak_spec("NVIDIA H100 PCIe").flops == 756e12 and peak_spec("NVIDIA H100 NVL").flops == 835.5e12
    assert peak_spec("NVIDIA H200").flops == 989.4e12 and peak_spec("NVIDIA H200 NVL").flops == 835.5e12
    for name in ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe",
                 "nvidia a100 sxm4 80gb", "  NVIDIA  A100_SXM4_80GB ", "A100-SXM4-40GB"):  # spellings vary
        assert peak_spec(name).flops == 312e12, name
    assert peak_spec("NVIDIA GeForce RTX 4090").flops == 165.2e12
    assert peak_spec("NVIDIA RTX A6000").flops == 154.8e12
    for unknown in ("NVIDIA H100", "NVIDIA GeForce RTX 3090", "Tesla V100-SXM2-16GB", "NVIDIA A100", ""):
        assert peak_spec(unknown) is None, unknown


def test_peak_override_and_cpu(monkeypatch):
    monkeypatch.delenv(PEAK_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert peak_spec() is None and peak_flops() is None  # CPU: no MFU claimed
    monkeypatch.setenv(PEAK_ENV, "500")
    assert peak_spec("NVIDIA A10G") == peak_spec() == peak_spec("NVIDIA H100 80GB HBM3")
    assert peak_spec().name == f"{PEAK_ENV}=500" and peak_flops() == 500e12
    for bad in ("fast", "0", "-3", "inf", "nan"):
        monkeypatch.setenv(PEAK_ENV, bad)
        with pytest.raises(ValueError, match=PEAK_ENV):
            peak_spec()
