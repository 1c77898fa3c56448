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


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)
