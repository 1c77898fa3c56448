"""Learning-rate schedule (linear warm-up, then linear decay to zero) and the MFU's two halves: the
model FLOPs of a sample (trainers/flops.py) and the device's datasheet peak."""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass

import torch

from trainers.flops import sample_flops

log = logging.getLogger("vlcurate")

PEAK_ENV = "VLCURATE_PEAK_TFLOPS"

# Dense (no 2:4 sparsity) BF16 tensor-core peaks with FP32 accumulate, as torch's BF16 matmuls run,
# in TFLOP/s, keyed by torch.cuda.get_device_name() as _normalised. Datasheets state "with sparsity"
# figures; the dense peak is half of those. A card whose vendor publishes no figure (AWS's A10G) is
# left out: no MFU is claimed for it unless VLCURATE_PEAK_TFLOPS says what to measure against.
_PEAKS = [
    # (device names, what the peak is, TFLOP/s); source in the comment above each.
    # NVIDIA Hopper architecture whitepaper / H100 datasheet: SXM5 1,979 sparse, PCIe 1,513, NVL 1,671.
    (("NVIDIA H100 80GB HBM3",), "NVIDIA H100 SXM5", 989.4),
    (("NVIDIA H100 PCIe",), "NVIDIA H100 PCIe", 756.0),
    (("NVIDIA H100 NVL",), "NVIDIA H100 NVL", 835.5),
    # NVIDIA H200 datasheet: SXM 1,979 sparse, NVL 1,671 sparse.
    (("NVIDIA H200",), "NVIDIA H200 SXM", 989.4),
    (("NVIDIA H200 NVL",), "NVIDIA H200 NVL", 835.5),
    # NVIDIA HGX B200 datasheet: FP16/BF16 4.5 PFLOPS per GPU with sparsity.
    (("NVIDIA B200",), "NVIDIA B200", 2250.0),
    # NVIDIA A100 datasheet: BF16 312 dense / 624 sparse, every form factor and memory size.
    (("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM-80GB", "NVIDIA A100-PCIE-40GB",
      "NVIDIA A100-PCIE-80GB", "NVIDIA A100 80GB PCIe"), "NVIDIA A100", 312.0),
    # NVIDIA A30 datasheet: BF16 165 dense / 330 sparse.
    (("NVIDIA A30",), "NVIDIA A30", 165.0),
    # NVIDIA A10 datasheet: BF16 125 dense / 250 sparse.
    (("NVIDIA A10",), "NVIDIA A10", 125.0),
    # NVIDIA A40 datasheet: BF16 with FP32 accumulate 149.7 dense / 299.4 sparse.
    (("NVIDIA A40",), "NVIDIA A40", 149.7),
    # NVIDIA Ampere GA102 whitepaper v2, appendix C (RTX A6000): 154.8 dense / 309.7 sparse.
    (("NVIDIA RTX A6000",), "NVIDIA RTX A6000", 154.8),
    # NVIDIA L4 datasheet: BF16 242 with sparsity.
    (("NVIDIA L4",), "NVIDIA L4", 121.0),
    # NVIDIA L40 / L40S datasheets: BF16 181.05 / 362.05 dense (362.1 / 733 sparse).
    (("NVIDIA L40",), "NVIDIA L40", 181.05),
    (("NVIDIA L40S",), "NVIDIA L40S", 362.05),
    # NVIDIA Ada Lovelace architecture whitepaper, appendix: RTX 4090 BF16 with FP32 accumulate 165.2 dense.
    (("NVIDIA GeForce RTX 4090",), "NVIDIA GeForce RTX 4090", 165.2),
]


@dataclass(frozen=True)
class PeakSpec:
    """The peak an MFU is relative to: `name` says which (for logs), `flops` in FLOP/s."""

    name: str
    flops: float


def _normalised(device_name: str) -> str:
    """Case, spaces, '-' and '_' and the vendor prefix vary between drivers and tools
    ("NVIDIA A100-SXM4-80GB" / "nvidia a100 sxm4 80gb"); nothing else may differ."""
    name = re.sub(r"[\s_-]+", " ", device_name).strip().casefold()
    return name.removeprefix("nvidia ")


_BY_NAME = {_normalised(name): PeakSpec(f"{label} dense BF16, {tflops:g} TFLOP/s", tflops * 1e12)
            for names, label, tflops in _PEAKS for name in names}


def peak_spec(device_name: str | None = None) -> PeakSpec | None:
    """The dense BF16 datasheet peak of this device (the current CUDA device when no name is given),
    matched by exact name: an "NVIDIA L40S" never gets the L4's peak. None for a device not listed
    and on CPU: no MFU is claimed. VLCURATE_PEAK_TFLOPS, when set, overrides the table (a GPU it
    lacks, or another precision's peak)."""
    override = os.environ.get(PEAK_ENV, "").strip()
    if override:
        try:
            tflops = float(override)
        except ValueError:
            tflops = -1.0
        if not (math.isfinite(tflops) and tflops > 0):
            raise ValueError(f"{PEAK_ENV}={override!r}: give the device's peak in TFLOP/s, a positive number")
        return PeakSpec(f"{PEAK_ENV}={override}", tflops * 1e12)
    if device_name is None:
        if not torch.cuda.is_available():
            return None
        device_name = torch.cuda.get_device_name()
    return _BY_NAME.get(_normalised(device_name))


def peak_flops() -> float | None:
    """peak_spec()'s FLOP/s for the current device, saying in the log which peak MFU is relative to."""
    spec = peak_spec()
    if spec is not None:
        log.info("MFU is relative to %s", spec.name)
    elif torch.cuda.is_available():
        log.info("no datasheet peak for %r: no MFU is logged (set %s to the device's peak to get one)",
                 torch.cuda.get_device_name(), PEAK_ENV)
    return None if spec is None else spec.flops


def warmup_linear_decay(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def refit_schedule(optimizer, scheduler) -> None:
    """After a checkpoint restored the scheduler: each group's rate from this run's schedule at the
    restored step. The restored rates are the old schedule's (0 at the end of a run whose optim.steps
    has since grown), and the first resumed step would run at them."""
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def count_params(module: torch.nn.Module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


def estimate_flops_per_sample(model, inputs) -> float:
    """Model FLOPs (forward + backward) of one training sample of this batch: trainers/flops.py's
    per-component count from the model's shapes, logged by component."""
    flops = sample_flops(model, inputs)
    log.info("model FLOPs per sample: %s", flops.summary())
    return flops.total
