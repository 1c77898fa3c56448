"""One optimizer step that never waits for the device, and the sums it keeps there for the logs.

Reading a device value on the host (`loss.item()`, `float(grad_norm)`, `int(mask.sum())`) waits for
every kernel queued before it: the CPU cannot prepare step n + 1 while the GPU runs step n, and on an
H200 that gap was most of a step (issue 19). So `Stepper.step` only queues work: the loss, the grad
norm and the finite check stay on the device, summed there (`Tallies`), and the loop reads them, in
one transfer, at logging and checkpoint steps only.

A non-finite loss or grad norm skips its update on the device: fused AdamW takes a `found_inf` flag
(the mechanism torch.amp.GradScaler drives) and, when it is set, leaves parameters, moments and step
counts as they were. The host learns of it at the next read: with optim.skip_nonfinite the count and
the first bad step are logged; without it the run stops there (TrainingError). So the error comes up
to run.log_every - 1 steps late, but the bad update was never applied, and the loop reads before
every checkpoint: no checkpoint is written after a non-finite step that should have stopped the run.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trainers.inputs import ModelInputs


@dataclass
class WindowSums:
    """What `Tallies.read` returns: the window's device sums, on the host."""

    loss: float  # mean over the window's finite steps (nan when there were none)
    grad_norm: float  # likewise
    nonfinite: int  # steps whose update was skipped
    first_bad: tuple[int, float, float] | None  # (step, loss, grad norm) of the first of them


class Tallies:
    """Sums over a logging window, kept on the device: adding never waits; `read` waits once."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        def zero(dtype):
            return torch.zeros((), dtype=dtype, device=self.device)

        self.loss, self.grad_norm, self.first_loss, self.first_grad = (zero(torch.float64) for _ in range(4))
        self.finite, self.nonfinite, self.first_step = (zero(torch.long) for _ in range(3))

    def add(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor, finite: torch.Tensor) -> None:
        loss, grad_norm = loss.double(), grad_norm.double()
        first = ~finite & (self.nonfinite == 0)
        # torch.where with the step as a Python scalar: no host-to-device copy, so no wait either.
        self.first_step = torch.where(first, step, self.first_step)
        self.first_loss = torch.where(first, loss, self.first_loss)
        self.first_grad = torch.where(first, grad_norm, self.first_grad)
        self.loss += torch.where(finite, loss, 0.0)  # where, not a product: nan * 0 is nan
        self.grad_norm += torch.where(finite, grad_norm, 0.0)
        self.finite += finite
        self.nonfinite += ~finite

    def read(self) -> WindowSums:
        values = torch.stack([self.loss, self.grad_norm, self.finite.double(), self.nonfinite.double(),
                              self.first_step.double(), self.first_loss, self.first_grad])
        loss, grad_norm, finite, nonfinite, step, first_loss, first_grad = values.tolist()  # the one wait
        return WindowSums(loss / finite if finite else math.nan, grad_norm / finite if finite else math.nan,
                          int(nonfinite), (int(step), first_loss, first_grad) if nonfinite else None)


class Stepper:
    """What a training step needs. `step` queues one on the device and returns without waiting for it.

    cudagraphs: `forward` replays CUDA graphs (torch.compile mode reduce-overhead or max-autotune on
    CUDA), whose outputs the next replay overwrites: the loss is added into a tensor of our own right
    away, and gradients held across micro-batches are copied out of the graph's memory.
    """

    def __init__(self, forward, optimizer: torch.optim.Optimizer, scheduler, params: list[torch.nn.Parameter],
                 grad_clip: float, world: int, device: torch.device, cudagraphs: bool):
        self.forward, self.optimizer, self.scheduler = forward, optimizer, scheduler
        self.lr = float(optimizer.param_groups[0]["lr"])  # the learning rate of the last step taken
        self.params, self.grad_clip, self.world, self.device = params, grad_clip, world, device
        self.cudagraphs = cudagraphs
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        self.tallies = Tallies(device)

    def step(self, batches: list[ModelInputs], number: int) -> None:
        """Forward and backward over the micro-batches (pinned host batches, or on the device), clipping,
        and the update unless the loss (the mean over micro-batches and ranks) or the grad norm is
        non-finite; scheduler step; the result added to the tallies as step `number`."""
        loss_sum = torch.zeros((), device=self.device)
        for micro, host in enumerate(batches):
            inputs = host.to(self.device, non_blocking=True)
            last = micro == len(batches) - 1
            if self.cudagraphs:  # a new replay begins; outputs of the previous one may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            with self.autocast, (nullcontext() if last or self.world == 1 else self.forward.no_sync()):
                loss = self.forward(inputs) / len(batches)
                loss.backward()
            loss_sum += loss.detach()  # queued now, before any later replay reuses the loss's memory
            if self.cudagraphs and not last:
                # The first backward hands its graph-owned gradient buffers to .grad; the next replay
                # would overwrite them before the next micro-batch adds to them (pytorch#169545).
                for p in self.params:
                    if p.grad is not None:
                        p.grad = p.grad.clone()
        if self.world > 1:  # before the update, so every rank takes the same decision on a non-finite loss
            dist.all_reduce(loss_sum)
            loss_sum /= self.world
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        finite = loss_sum.isfinite() & grad_norm.isfinite()
        self.optimizer.found_inf = (~finite).float()  # fused AdamW: 1 skips the whole update, state included
        self.optimizer.step()
        self.lr = float(self.optimizer.param_groups[0]["lr"])  # what this step used: a Python float, no sync
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.tallies.add(number, loss_sum, grad_norm, finite)
