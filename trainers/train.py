"""The training loop (nanoGPT-style): fused AdamW, warm-up + linear decay, gradient accumulation
and clipping, bf16 autocast on CUDA, optional torch.compile (CUDA graphs), DDP under torchrun,
atomic checkpoints and exact resume, JSONL logs (+ TensorBoard), a progress bar (tqdm) on rank 0.

The step itself (trainers/step.py) never waits for the device; the loop reads the device once per
logging window and before each checkpoint. metrics.jsonl, one line per run.log_every steps: step,
epoch, lr; skipped (unusable samples redrawn) and nonfinite_steps (updates skipped), run totals;
loss and grad_norm, means over the window's finite steps; samples_per_s, tokens_per_s (loss
tokens), steps_per_s and mfu (None where the GPU's peak is unknown; `peak` names the datasheet figure
it is relative to) over the window's wall time,
all ranks together; data_wait_s (seconds this rank's loop waited for its DataLoader in the window) and
compute_s (the window's other seconds); loader_samples_per_s: the rate the data path could deliver,
samples over the seconds its workers spent building them (`build_s`) divided among data.workers,
all ranks together. A data path near or below samples_per_s starves the step: the periodic log
line shows the share of time spent waiting for it ("data wait 45%"). A run resumed from a
checkpoint between two logging steps logs its first window over the steps since the checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from trainers.build import build_model
from trainers.checkpoint import STEP_DIR, latest_checkpoint, load_checkpoint, save_checkpoint
from trainers.stop_signal import StopFlag, TrainingStopped, ignore_in_worker, stop_on_signal
from trainers.config import TrainConfig, config_to_dict
from trainers.data import TaskBatches, apply_storage_options, build_index, counts_text, manifest_shards, shard_urls
from trainers.run_dir import last_metrics, prepare_out_dir, truncate_metrics
from trainers.resume_check import check_resume
from trainers.schedule import (count_params, estimate_flops_per_sample, peak_flops, peak_spec, refit_schedule,
                               warmup_linear_decay)
from trainers.step import Stepper
from trainers.tasks import build_task

log = logging.getLogger("vlcurate")


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss); the message says what to change."""


def _distributed() -> tuple[int, int, int]:
    if "RANK" not in os.environ:
        return 0, 1, 0
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))


def _param_groups(params: list[torch.nn.Parameter], weight_decay: float) -> list[dict]:
    decay = [p for p in params if p.ndim >= 2]  # matrices decay; biases, norms and scales do not
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def cpu_threads(config: TrainConfig, world: int = 1, workers: int | None = None) -> int | None:
    """Intra-op threads for a CPU run: run.threads when set; else None (torch's own) when OMP_NUM_THREADS
    is set; else this process's share of the CPUs it may use, less the DataLoader workers (data.workers
    unless given) and one more for everything else, at least 1. torch's default (a thread per core)
    next to workers or any other busy process oversubscribes the cores, and its threads then wait on
    each other: on a shared 2-core machine a tiny captioner stepped 10-20x slower with 2 threads than
    with 1 (README, "Training on CPU")."""
    if config.run.threads:
        return config.run.threads
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = config.data.workers if workers is None else workers
    return max(1, cpus // world - workers - 1)


@contextmanager
def cpu_threads_for(config: TrainConfig, world: int = 1, workers: int | None = None):
    """torch.set_num_threads(cpu_threads(...)) for the block, the process's setting restored after, so
    a process that trains or evaluates several runs in turn gets each run's setting."""
    before = torch.get_num_threads()
    threads = cpu_threads(config, world, workers)
    if threads:
        torch.set_num_threads(threads)
        log.info("CPU threads: %d (run.threads: %d, data.workers: %d)", threads, config.run.threads,
                 config.data.workers if workers is None else workers)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = False) -> dict:
    """resume: continue from run.out_dir's latest checkpoint; overwrite: delete an earlier run's outputs
    there first (with neither, an out_dir holding a run is refused: trainers/run_dir.py). progress: a bar."""
    cuda = config.run.device == "cuda" or (config.run.device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", 1))
    with nullcontext() if cuda else cpu_threads_for(config, world):
        return _train(config, resume, overwrite, progress)


def _train(config: TrainConfig, resume: bool, overwrite: bool, progress: bool) -> dict:
    rank, world, local_rank = _distributed()
    out = Path(config.run.out_dir)
    # Every rank checks before any deletes, so all refuse (or go on) alike; rank 0 clears only once
    # the data, models and settings have passed (below): a bad path no longer costs the earlier run.
    prepare_out_dir(out, resume, overwrite, delete=False)
    cuda = config.run.device == "cuda" or (config.run.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    # every generator a checkpoint saves (rng.pt) starts from the seed: two runs write the same files
    torch.manual_seed(config.run.seed)
    np.random.seed(config.run.seed % 2**32)
    random.seed(config.run.seed)
    checkpoint = latest_checkpoint(str(out)) if resume else None  # CheckpointError: some, none usable
    done = int(STEP_DIR.fullmatch(checkpoint.name).group(1)) if checkpoint is not None else 0
    if done >= config.optim.steps:  # before the models load: there is nothing to train
        log.warning("%s finished at step %d (optim.steps %d): nothing to resume; --overwrite trains it again",
                    out, done, config.optim.steps)
        return last_metrics(out) or {"step": done}
    if checkpoint is not None:
        check_resume(checkpoint, config)  # before the models load: a changed setting fails in a second
    apply_storage_options([config.data.shards], config.data.storage_options)
    # Before the models: a bad path or a changed shard fails in seconds.
    index = build_index(shard_urls(config.data.shards), expected=manifest_shards(config.data.shards), warn=rank == 0,
                        verify=config.data.verify_shards)
    model, trainable, tokenizer, preprocess = build_model(config)
    task = build_task(config, tokenizer, preprocess)
    model.to(device)
    params = model.trainable_parameters()
    optim = config.optim
    # Fused on CPU too: its found_inf flag is how a non-finite step is skipped without a host sync.
    optimizer = torch.optim.AdamW(_param_groups(params, optim.weight_decay), lr=optim.lr,
                                  betas=(optim.beta1, optim.beta2), fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(optim.warmup_steps, optim.steps))
    if world > 1:
        dist.barrier()
    if rank == 0:
        prepare_out_dir(out, resume, overwrite)
    if world > 1:
        dist.barrier()
    step, skipped_total, nonfinite_steps = 0, 0, 0
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, trainable, optimizer, scheduler)
        refit_schedule(optimizer, scheduler)  # optim.steps may have changed: the rate of this run's schedule
        step, skipped_total = state["step"], state.get("skipped", 0)
        nonfinite_steps = state.get("nonfinite_steps", 0)
        log.info("resumed from %s at step %d", checkpoint, step)
    elif resume:
        log.info("--resume: no checkpoint in %s, starting fresh", out)
    if resume and rank == 0:
        truncate_metrics(out, step)

    forward, cudagraphs = model, False
    if config.run.compile:
        forward = torch.compile(model, mode=config.run.compile_mode)
        cudagraphs = cuda and config.run.compile_mode in ("reduce-overhead", "max-autotune")
    if world > 1:
        forward = DDP(forward, device_ids=[local_rank] if cuda else None)
    stepper = Stepper(forward, optimizer, scheduler, params, optim.grad_clip or math.inf, world, device, cudagraphs)

    workers = config.data.workers
    with ExitStack() as stack:
        # One process: a SIGTERM checkpoints, then stops (set before the DataLoader forks its workers,
        # which leave the signal to this process). DDP ranks would stop at different steps and hang
        # in the collective: there the signal stops the run as Ctrl-C does.
        stop = stack.enter_context(stop_on_signal()) if world == 1 else StopFlag()
        batches = TaskBatches(index, task, config.data.batch_size, config.run.seed, start=step * optim.accumulation,
                              rank=rank, storage_options=config.data.storage_options)
        loader = iter(DataLoader(batches, batch_size=None, num_workers=workers, persistent_workers=workers > 0,
                                 prefetch_factor=config.data.prefetch if workers else None, pin_memory=cuda,
                                 worker_init_fn=ignore_in_worker if workers else None))
        logger = _Logger(out, config, rank, count_params(trainable, True))
        model.train()
        window, last = _Window(), {}
        windows_logged, starved_warned, skips_warned = 0, False, False
        show = progress and rank == 0
        bar = stack.enter_context(tqdm(total=optim.steps, initial=step, unit="step", desc="train", disable=not show,
                                       dynamic_ncols=True))
        if show:  # log lines print above the bar instead of breaking it
            stack.enter_context(logging_redirect_tqdm())
        while step < optim.steps:
            micro = []
            for _ in range(optim.accumulation):
                batch = window.next(loader)
                skipped_total += batch["skipped"]
                micro.append(batch["inputs"])
            if logger.flops_per_sample is None and logger.peak:
                logger.flops_per_sample = estimate_flops_per_sample(model, micro[0].to(device))
            step += 1
            stepper.step(micro, step)
            window.steps += 1
            bar.update(1)
            log_now = step % config.run.log_every == 0 or step == optim.steps
            save_now = step % config.run.checkpoint_every == 0 or step == optim.steps or stop.signal is not None
            if not (log_now or save_now):
                continue  # nothing read from the device: the next step is prepared while this one runs
            sums = stepper.tallies.read()
            if sums.nonfinite and not optim.skip_nonfinite:
                bad, loss, grad_norm = sums.first_bad
                raise TrainingError(
                    f"step {bad}: the loss is {loss} (grad norm {grad_norm}): training diverged or a batch is "
                    "broken; lower optim.lr, or set optim.skip_nonfinite: true to skip such updates. Found at "
                    f"step {step} (the loss is read every run.log_every steps and before each checkpoint); that "
                    "update was not applied and no checkpoint was written since. Checkpoints so far are kept.")
            if log_now:
                nonfinite_steps += sums.nonfinite
                if sums.nonfinite:
                    bad, loss, grad_norm = sums.first_bad
                    log.warning("steps %d-%d: %d update(s) skipped (optim.skip_nonfinite), the first at step %d: "
                                "loss %s, grad norm %s", step - window.steps + 1, step, sums.nonfinite, bad, loss,
                                grad_norm)
                samples_seen = step * optim.accumulation * config.data.batch_size * world
                last = window.record(world, workers, logger, {
                    "step": step, "epoch": samples_seen / config.data.samples_per_epoch, "loss": sums.loss,
                    "lr": stepper.lr, "grad_norm": sums.grad_norm, "skipped": skipped_total,
                    "nonfinite_steps": nonfinite_steps})
                logger.write(last, optim.steps)
                windows_logged += 1
                if rank == 0 and not skips_warned and window.skipped_share() >= 0.1:
                    log.warning("%.0f%% of the samples drawn in steps %d-%d could not be used and were redrawn (%s; "
                                "first: %s); metrics.jsonl has the reasons per window", 100 * window.skipped_share(),
                                step - window.steps + 1, step, counts_text(window.skipped), window.first_skip)
                    skips_warned = True
                if rank == 0 and windows_logged >= 2 and not starved_warned:  # the first window holds start-up
                    hint = starved_hint(last, workers, world)
                    if hint:
                        log.warning(hint)
                        starved_warned = True
                bar.set_postfix(loss=f"{sums.loss:.4f}", refresh=False)
                stepper.tallies.reset()
                window = _Window()
            if save_now:
                if rank == 0:
                    save_checkpoint(str(out), step, trainable, optimizer, scheduler,
                                    {"data_micro_step": step * optim.accumulation, "skipped": skipped_total,
                                     "nonfinite_steps": nonfinite_steps + (0 if log_now else sums.nonfinite),
                                     "config": config_to_dict(config)})
                if world > 1:  # the others wait for rank 0's checkpoint (a barrier syncs the device)
                    dist.barrier()
                if stop.signal is not None and step < optim.steps:  # at the last step the run is simply done
                    logger.close()
                    raise TrainingStopped(f"{stop.signal.name}: stopped after step {step}, checkpoint written; "
                                          "--resume continues from it")
    logger.close()
    if world > 1:
        dist.destroy_process_group()
    return last


def starved_hint(record: dict, workers: int, world: int, threshold: float = 0.1) -> str | None:
    """When the step waited for data more than `threshold` of a window: what the data path delivers,
    what the step alone would take, and the data.workers that would keep up (from the measured rate
    per worker, with 20% headroom; each worker also holds data.prefetch batches ready)."""
    wall = record["data_wait_s"] + record["compute_s"]
    if wall <= 0 or record["data_wait_s"] / wall <= threshold or record["compute_s"] <= 0:
        return None
    samples = record["samples_per_s"] * wall / world  # this rank's samples in the window
    step_alone = samples / record["compute_s"]
    per_worker = record["loader_samples_per_s"] / world / max(workers, 1)
    needed = max(workers + 1, -(-int(1.2 * step_alone) // max(int(per_worker), 1)))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return (f"the step waited for data {record['data_wait_s'] / wall:.0%} of the last window: the data path "
            f"builds {per_worker * max(workers, 1):.0f} samples/s per rank with data.workers {workers}, the step "
            f"alone would take {step_alone:.0f}; data.workers: {needed} would keep up "
            f"({cpus} CPUs here{'; over them, decoding is the limit: shrink images before training' if needed > cpus else ''})")


class _Window:
    """Host-side counts over a logging window, none read from the device: wall time, time spent
    waiting for the DataLoader, samples and loss tokens delivered, and the seconds spent building them."""

    def __init__(self):
        self.started = time.perf_counter()
        self.steps = self.samples = self.tokens = 0
        self.wait_s = self.build_s = 0.0
        self.skipped: dict[str, int] = {}  # samples drawn but not usable, by reason (this rank's)
        self.first_skip: str | None = None

    def next(self, loader) -> dict:
        waiting = time.perf_counter()
        batch = next(loader)
        self.wait_s += time.perf_counter() - waiting
        self.samples += batch["inputs"].batch_size
        self.tokens += batch["tokens"]
        self.build_s += batch["build_s"]
        for reason, n in batch["skipped_reasons"].items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n
        self.first_skip = self.first_skip or batch["first_skip"]
        return batch

    def skipped_share(self) -> float:
        skipped = sum(self.skipped.values())
        return skipped / max(1, skipped + self.samples)

    def record(self, world: int, workers: int, logger: _Logger, values: dict) -> dict:
        """values and the window's rates. Call after a device read: the window's work is then done."""
        elapsed = time.perf_counter() - self.started
        rate = self.samples * world / elapsed
        return {**values, "samples_per_s": rate, "tokens_per_s": self.tokens * world / elapsed,
                "steps_per_s": self.steps / elapsed, "mfu": logger.mfu(rate / world), "peak": logger.peak_name,
                "data_wait_s": self.wait_s, "compute_s": elapsed - self.wait_s,
                "loader_samples_per_s": self.samples * world * max(workers, 1) / max(self.build_s, 1e-9),
                **({"skipped_reasons": dict(self.skipped)} if self.skipped else {})}


class _Logger:
    """metrics.jsonl (+ TensorBoard) on rank 0."""

    def __init__(self, out: Path, config: TrainConfig, rank: int, trainable_params: int):
        self.rank = rank
        self.peak = peak_flops()  # None on CPU and unknown GPUs: no MFU is claimed there
        self.peak_name = peak_spec().name if self.peak else None  # which peak mfu is relative to
        self.flops_per_sample: float | None = None
        self.tb = None
        if rank != 0:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.file = open(out / "metrics.jsonl", "a", encoding="utf-8")
        (out / "config.json").write_text(json.dumps(config_to_dict(config), indent=2))
        log.info("trainable parameters: %s", f"{trainable_params:,}")
        if config.run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))

    def mfu(self, samples_per_s_per_device: float) -> float | None:
        if self.peak is None or self.flops_per_sample is None:
            return None
        return self.flops_per_sample * samples_per_s_per_device / self.peak

    def write(self, record: dict, total_steps: int) -> None:
        if self.rank != 0:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        # The periodic line a run without a bar (--quiet, CI logs) shows: speed and time left included.
        eta = timedelta(seconds=round((total_steps - record["step"]) / max(record["steps_per_s"], 1e-9)))
        waited = record["data_wait_s"] / max(record["data_wait_s"] + record["compute_s"], 1e-9)
        log.info("step %d/%d loss %.4f lr %.2e grad %.3f data wait %.0f%% %.2f steps/s eta %s", record["step"],
                 total_steps, record["loss"], record["lr"], record["grad_norm"], 100 * waited, record["steps_per_s"],
                 eta)
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.rank == 0:
            self.file.close()
            if self.tb is not None:
                self.tb.close()
