"""One measured row of tests/bench/bench_trainer_gpu.py: the training config of a run, training it with
its loader probed, its metrics read back; the time budget (planner and deadline); and the ablation's
rows (--ablate: one config-level change of issue 19 at a time)."""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

ADAPTER = {"kind": "vadapter", "queries": 64, "heads": 8, "tiny_lm": {"width": 512, "layers": 4, "heads": 8}}
# --dry-run: the same code path at toy sizes: the shipped LLM configs shrunk to one narrow layer (their
# 49,152-token vocabulary kept), a 1-layer 64px ViT, a small VAdapter.
DRY_LLM = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16}
DRY_ADAPTER = {"kind": "vadapter", "queries": 8, "heads": 2, "tiny_lm": {"width": 32, "layers": 1, "heads": 2}}
CAPTION_TOKENS = 24

# --ablate: from the old trainer's settings to the new defaults, one config-level change per row.
# (label, the row it changes from, the change, run/data overrides, optional: only if budget remains)
ABLATIONS = (
    ("eager, longest", None, "the old trainer's settings: eager, data.pad_to: longest",
     {"compile": False, "compile_mode": None, "pad_to": "longest"}, False),
    ("eager, max", "eager, longest", "data.pad_to: max (fixed shapes)",
     {"compile": False, "compile_mode": None, "pad_to": "max"}, False),
    ("default, max", "eager, max", "run.compile: true, run.compile_mode: default",
     {"compile": True, "compile_mode": "default", "pad_to": "max"}, False),
    ("reduce-overhead, max", "default, max", "run.compile_mode: reduce-overhead (CUDA graphs): the new default",
     {"compile": True, "compile_mode": "reduce-overhead", "pad_to": "max"}, False),
    ("max-autotune-no-cudagraphs, max", "default, max", "run.compile_mode: max-autotune-no-cudagraphs",
     {"compile": True, "compile_mode": "max-autotune-no-cudagraphs", "pad_to": "max"}, True),
)
# Issue 19's changes that no config switches off: every row above has them.
FIXED_IN_CODE = [
    "use_cache=False in the training forward: no KV cache built (trainers/llm.py)",
    "the LM head projects only the scored (caption) positions onto the vocabulary (FrozenLLM.logits_at)",
    "no host sync in the step: loss and grad norm summed on the device, read every run.log_every steps "
    "(trainers/step.py)",
    "fused AdamW, a non-finite step skipped through its found_inf flag, no host read (trainers/train.py)",
]
ISSUE_BASELINE = {
    "source": "quoted from issue 19's text; NOT measured by this run",
    "device": "NVIDIA H200", "adapter": "vadapter", "batch": 64,
    "eager_samples_per_s": 462, "compiled_default_samples_per_s": 986,
    "note": "before any of issue 19's changes (code-level ones included), on another card: a reference, not "
            "the baseline of this run's ratios (its row 'eager, longest' is)",
}


class OutOfBudget(Exception):
    pass


class LoaderProbe:
    """Stands in for trainers/train.py's DataLoader: passes the real loader's batches through and
    records each one's LLM sequence length; synthetic: yields the first batch, moved to the device
    once, at every step, so the step's time is compute alone."""

    def __init__(self, data_loader, queries: int, synthetic: bool, device: str):
        self.data_loader, self.queries, self.synthetic, self.device = data_loader, queries, synthetic, device
        self.positions: list[int] = []  # per batch: what the LLM reads per sample

    def __call__(self, *args, **kwargs):
        return self._batches(self.data_loader(*args, **kwargs))

    def _batches(self, loader):
        for batch in loader:
            inputs = batch["inputs"]
            # Text tokens with their padding + every image slot's visual tokens: the spliced length
            # (trainers/inputs.py).
            self.positions.append(inputs.ids.shape[1] + inputs.max_images * self.queries)
            if not self.synthetic:
                yield batch
                continue
            on_device = {**batch, "inputs": inputs.to(self.device), "skipped": 0}
            while True:
                yield on_device


@contextmanager
def deadline_alarm(deadline: float):
    """OutOfBudget raised in the main thread at the deadline, whatever it is doing (a compile included),
    and again every 10 s after it in case something swallowed it."""
    def expire(signum, frame):
        raise OutOfBudget
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline - time.perf_counter()), 10.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def compile_backend(backend: str):
    """torch.compile through another backend than inductor while a run builds its step: the CPU dry
    run's aot_eager traces with dynamo and AOTAutograd as on the GPU but generates no code (seconds, not
    a minute per run). run.compile_mode is then not applied."""
    import torch

    original = torch.compile
    if backend != "inductor":
        torch.compile = lambda model, mode=None, **kwargs: original(model, backend=backend, **kwargs)
    try:
        yield
    finally:
        torch.compile = original


def write_llm_dir(folder: Path, name: str, overrides: dict, tokenizer) -> tuple[str, int]:
    """The shipped config (with overrides) and the tokenizer saved beside it, so each run reads
    tokenizer.json instead of parsing the GGUF again; its parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from trainers.llm import shipped_config

    config = {**json.loads((shipped_config(name) / "config.json").read_text()), **overrides}
    out = folder / name
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(out)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out))
    return str(out), sum(p.numel() for p in model.parameters())


def run_config(args, folder: Path, shards: str, vision: dict, llm_dir: str, batch: int, compile: bool | None = None,
               compile_mode: str | None = None, pad_to: str = "max"):
    """The run's TrainConfig: args' compile settings unless given (an ablation row's)."""
    from trainers.config import config_from_dict

    adapter = DRY_ADAPTER if args.dry_run else ADAPTER
    run = {"out_dir": str(folder), "device": args.device, "log_every": args.timed_steps,
           "checkpoint_every": 10**9, "compile": args.compile if compile is None else compile,
           "compile_mode": compile_mode or args.compile_mode}
    return config_from_dict({
        "run": run, "vision": vision,
        "llm": {"path": llm_dir, "random_init": True, "dtype": "bfloat16" if args.device == "cuda" else "float32"},
        "adapter": adapter,
        "data": {"shards": shards, "batch_size": batch, "workers": args.workers, "max_caption_tokens": CAPTION_TOKENS,
                 "pad_to": pad_to},
        # Random weights: a stray non-finite step must not end a timing run.
        "optim": {"steps": args.steps, "warmup_steps": 2, "skip_nonfinite": True},
    }).validate()


def measure(args, config, synthetic: bool) -> dict:
    """Train one config; its last metrics window, LLM positions, memory and compile counters."""
    import torch
    from torch._dynamo.utils import counters

    import trainers.train

    torch._dynamo.reset()
    counters.clear()
    gc.collect()
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    probe = LoaderProbe(trainers.train.DataLoader, config.adapter.queries, synthetic, args.device)
    trainers.train.DataLoader = probe
    started = time.perf_counter()
    try:
        with compile_backend(args.compile_backend):
            trainers.train.train(config)
    finally:
        trainers.train.DataLoader = probe.data_loader
    wall = time.perf_counter() - started
    lines = (Path(config.run.out_dir) / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    per_sample = sum(probe.positions) / len(probe.positions)
    samples = last["samples_per_s"]
    return {
        "samples_per_s": samples,
        "llm_tokens_per_sample": per_sample,
        "llm_tokens_per_s": samples * per_sample,
        "caption_tokens_per_s": last["tokens_per_s"],
        "step_ms": 1000.0 / last["steps_per_s"],
        "mfu": last.get("mfu"),
        "peak": last.get("peak") or peak_name(last.get("mfu")),
        "gpu_mem_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "data_wait_s": last.get("data_wait_s"),
        "compute_s": last.get("compute_s"),
        # A synthetic run's batches were built once: no rate of the data path.
        "loader_samples_per_s": None if synthetic else last.get("loader_samples_per_s"),
        "wall_s": wall,
        "graph_breaks": sum(counters["graph_break"].values()) if config.run.compile else None,
        "graphs_compiled": counters["stats"]["unique_graphs"] if config.run.compile else None,
    }


def measure_or_failure(args, config, synthetic: bool, deadline: float) -> tuple[dict | None, str | None]:
    """measure(), or why it failed: a run that breaks (out of memory, a compile error) is listed with its
    error and the bench goes on, so the runs around it still give figures. The deadline is no failure:
    OutOfBudget goes on up, also when torch.compile raised it wrapped in its own error (the alarm went
    off inside the compiler: BackendCompilerFailed, its inner_exception)."""
    import traceback

    try:
        return measure(args, config, synthetic), None
    except OutOfBudget:
        raise
    except Exception as error:  # noqa: BLE001: any error of one run, reported in the JSON
        if time.perf_counter() >= deadline or budget_behind(error):
            raise OutOfBudget from error
        traceback.print_exc()
        return None, f"failed: {type(error).__name__}: {error}"[:600]


def budget_behind(error: BaseException | None) -> bool:
    """Whether OutOfBudget is in an error's chain (causes, contexts, torch's inner_exception)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OutOfBudget):
            return True
        seen.add(id(error))
        error = getattr(error, "inner_exception", None) or error.__cause__ or error.__context__
    return False


def not_fitting(rows: list[dict], name: str, plan_left: list, deadline: float, seen_shape: bool = False) -> str | None:
    """Why the next run of LLM `name` would not fit: it gets its LLM's share of the time left (a first
    run, all of it), and may take as long as that LLM's longest run so far (before its first: any).
    seen_shape: a run at a batch already measured takes its compiled code from inductor's on-disk
    cache (the CPU dry run with --compile --compile-backend inductor: 3 s against 60-70 s), so as long as
    that LLM's quickest."""
    now = time.perf_counter()
    mine = [r["wall_s"] for r in rows if r["llm"] == name]
    estimate = min(mine) if seen_shape and mine else max(mine or [r["wall_s"] for r in rows] or [0.0])
    room = (deadline - now) / len({p[0] for p in plan_left}) if mine else deadline - now
    if room <= 0:
        return "not started: --budget-s spent"
    if estimate > room:
        return f"a run takes ~{estimate:.0f} s, {room:.0f} s of the budget left for it"
    return None


def with_ablation_ratios(rows: list[dict]) -> list[dict]:
    """In ABLATIONS order; samples/s against the first row (the old settings) and against the row each
    one changes one setting of (None where that row was not measured)."""
    by_label = {r["ablation"]: r for r in rows}
    order = [a[0] for a in ABLATIONS]
    rows = sorted(rows, key=lambda r: order.index(r["ablation"]))
    for row in rows:
        base, before = by_label.get(order[0]), by_label.get(row["changes_from"])
        row["baseline_batch"] = row["batch"]
        row["samples_per_s_ratio"] = row["samples_per_s"] / base["samples_per_s"] if base else None
        row["samples_per_s_ratio_to_previous"] = (row["samples_per_s"] / before["samples_per_s"]
                                                  if before else None)
    return rows


def shared_cells(row: dict) -> tuple[str, str, str]:
    """The MFU, peak-memory and data-wait/compute cells both tables print, '-' where not measured."""
    mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "-"
    mem = f"{row['gpu_mem_peak_gib']:.1f}" if row["gpu_mem_peak_gib"] is not None else "-"
    split = (f"{row['data_wait_s']:.2f}/{row['compute_s']:.2f}" if row["data_wait_s"] is not None
             and row["compute_s"] is not None else "-")
    return mfu, mem, split


def ablation_table(report: dict) -> str:
    head = (f"{report['vision']} + {report['adapter']} + {report['ablate']['llm']} (RANDOM weights), batch "
            f"{report['ablate']['batch']}; {report['device']}, torch {report['torch']}, compile backend "
            f"{report['compile_backend']}{' (DRY RUN: toy sizes, no figures)' if report['dry_run'] else ''}")
    lines = [head, f"{'ablation':<33}{'samples/s':>11}{'vs first':>10}{'vs prev':>9}{'step ms':>9}{'MFU':>7}"
                   f"{'GiB':>7}{'wait/compute':>14}{'breaks':>8}{'wall s':>8}"]
    for r in report["rows"]:
        ratios = [f"{x:.2f}x" if x is not None else "-" for x in (r["samples_per_s_ratio"],
                                                                  r["samples_per_s_ratio_to_previous"])]
        mfu, mem, split = shared_cells(r)
        breaks = "-" if r["graph_breaks"] is None else str(r["graph_breaks"])
        lines.append(f"{r['ablation']:<33}{r['samples_per_s']:>11.1f}{ratios[0]:>10}{ratios[1]:>9}"
                     f"{r['step_ms']:>9.1f}{mfu:>7}{mem:>7}{split:>14}{breaks:>8}{r['wall_s']:>8.1f}")
    lines.append(f"vs first: samples/s against '{ABLATIONS[0][0]}'; vs prev: against the row it changes one "
                 "setting of (changes_from)")
    lines += [f"skipped {s['ablation']}: {s['reason']}" for s in report["skipped"]]
    lines.append("the same in every row (fixed in code): " + "; ".join(report["fixed_in_code"]))
    issue = report["issue_baseline"]
    lines.append(f"issue 19's own figures ({issue['source']}): {issue['device']}, batch {issue['batch']}: eager "
                 f"{issue['eager_samples_per_s']}, compiled default {issue['compiled_default_samples_per_s']} "
                 "samples/s")
    return "\n".join(lines)


def peak_name(mfu: float | None) -> str | None:
    """The name of the peak an MFU is relative to, for metrics written without one."""
    from trainers.schedule import peak_spec

    spec = peak_spec() if mfu is not None else None
    return spec.name if spec else None


@contextmanager
def nominal_cpu_peak(dry_run: bool):
    """A CPU has no datasheet peak, so no MFU: the dry run sets a nominal 1 TFLOP/s (named as such in
    each row's peak) for its runs, so the MFU path runs end to end."""
    from trainers.schedule import PEAK_ENV

    before = os.environ.get(PEAK_ENV)
    if dry_run and before is None:
        os.environ[PEAK_ENV] = "1"
    try:
        yield
    finally:
        if dry_run and before is None:
            del os.environ[PEAK_ENV]
