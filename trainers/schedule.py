"""Learning-rate schedule (linear warm-up, then linear decay to zero) and the MFU estimate."""

from __future__ import annotations

import torch

# Dense bf16 peak FLOP/s by device name fragment (vendor datasheets).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def warmup_linear_decay(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def count_params(module: torch.nn.Module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


def flops_per_sample(vision_params: int, vision_tokens: int, adapter_params: int, adapter_tokens: int,
                     llm_params: int, llm_tokens: int) -> float:
    """Frozen vision: forward only (2N per token). Frozen LLM: forward + input-grad (4N per token).
    Trainable adapter: forward + backward (6N per token)."""
    return 2 * vision_params * vision_tokens + 6 * adapter_params * adapter_tokens + 4 * llm_params * llm_tokens


def estimate_flops_per_sample(model, inputs) -> float:
    """Model FLOPs of one training sample (an estimate, 2N per token forward): frozen vision forward
    over its patch tokens, the trainable adapter's 6N over the larger of its input and output token
    counts, both per image; the frozen LLM's forward + input-grad over the tokens and visual tokens."""
    with torch.no_grad():
        tokens = model.vision(inputs.pixels[:1])
        visual = model.adapter(tokens)
    images = len(inputs.pixels) / inputs.batch_size  # per sample
    llm = model.llm.model
    llm_params = count_params(llm) - llm.get_input_embeddings().weight.numel()
    llm_tokens = inputs.ids.shape[1] + images * visual.shape[1]
    return flops_per_sample(count_params(model.vision), images * tokens.shape[1], count_params(model.adapter, True),
                            images * max(tokens.shape[1], visual.shape[1]), llm_params, llm_tokens)


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)
