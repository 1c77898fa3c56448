"""Trainer throughput on a GPU (issue 19), in one process under a time budget, compile included.

Frozen LLMs built from the shipped configs with RANDOM weights (trainers/configs/llm/: SmolLM2-135M,
then a ~1B Llama; llm.random_init, nothing downloaded or dequantised) + ViT-B-16 with random weights
+ a VAdapter (64 queries, tiny LM 512 wide, 4 layers, 8 heads), bf16 autocast, torch.compile
(run.compile_mode reduce-overhead, data.pad_to max), the batch size swept per LLM on generated shapes
shards. Each run's metrics.jsonl gives its last window of --timed-steps steps (start-up and compile
excluded). Per (LLM, batch): samples/s; LLM tokens/s (every position the LLM processes: prompt and
caption tokens with their padding, plus the visual tokens); caption tokens/s (the loss tokens, the
trainer's tokens_per_s); MFU and the peak it is relative to; peak GPU memory; step time and its split
into data wait and compute. Plus one row per LLM at its fastest batch fed a single batch kept on the
device (data "synthetic": compute alone, the loader taken out). JSON to stdout and --out; a table,
samples/s as a ratio to the smallest batch of the same LLM, to stderr.

--budget-s (330) bounds the whole run: each LLM gets its share of what is left, a run starts only if
one as long as the longest so far still fits (smallest batch first, then the largest, then the rest),
and at the deadline the run in progress is stopped; what was measured is written, the rest listed
under "skipped". Every run starts from a clean compile cache (torch._dynamo.reset), as a real run does.

    make bench-gpu                                          # = the GPU run, defaults below
    .venv/bin/python tests/bench/bench_trainer_gpu.py --sweep smollm2-135m=64,256 --budget-s 200
    .venv/bin/python tests/bench/bench_trainer_gpu.py --dry-run   # CPU, tiny sizes, well under a minute
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SWEEPS = {"smollm2-135m": (32, 64, 128, 256), "llama-1b": (16, 32, 64)}
ADAPTER = {"kind": "vadapter", "queries": 64, "heads": 8, "tiny_lm": {"width": 512, "layers": 4, "heads": 8}}
# --dry-run: the same code path at toy sizes: the shipped LLM configs shrunk to one narrow layer (their
# 49,152-token vocabulary kept), a 1-layer 64px ViT, a small VAdapter.
DRY_SWEEPS = {"smollm2-135m": (2, 4), "llama-1b": (2,)}
DRY_LLM = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16}
DRY_ADAPTER = {"kind": "vadapter", "queries": 8, "heads": 2, "tiny_lm": {"width": 32, "layers": 1, "heads": 2}}
DEFAULTS = {  # option: (GPU run, --dry-run)
    "device": ("cuda", "cpu"), "compile": (True, False), "steps": (30, 4), "timed_steps": (10, 2),
    "budget_s": (330.0, 120.0), "samples": (2048, 64), "workers": (0, 1),
    "out": ("bench_trainer_gpu.json", "bench_trainer_gpu_dry.json"),
}
CAPTION_TOKENS = 24


class OutOfBudget(Exception):
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", action="append", metavar="LLM=B1,B2",
                   help="a shipped LLM config and its batch sizes (repeatable); default: " +
                   " ".join(f"{k}={','.join(map(str, v))}" for k, v in SWEEPS.items()))
    p.add_argument("--device")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction)
    p.add_argument("--compile-mode", default="reduce-overhead")
    p.add_argument("--steps", type=int, help="per run, a multiple of --timed-steps")
    p.add_argument("--timed-steps", type=int, help="the last window of each run, the one reported")
    p.add_argument("--budget-s", type=float)
    p.add_argument("--samples", type=int, help="samples in the generated shards")
    p.add_argument("--workers", type=int, help="DataLoader workers (0: CPUs - 4, between 4 and 12)")
    p.add_argument("--data", choices=("both", "loader", "synthetic"), default="both",
                   help="both: the sweep through the loader plus a synthetic row per LLM at its fastest batch")
    p.add_argument("--out")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: every code path, no figures")
    args = p.parse_args(argv)
    for key, (real, dry) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, dry if args.dry_run else real)
    if not args.workers:
        args.workers = min(12, max(4, (os.cpu_count() or 8) - 4))
    if args.steps <= args.timed_steps or args.steps % args.timed_steps:
        p.error("--steps must be a multiple of --timed-steps, and larger: the first window holds compilation")
    default = DRY_SWEEPS if args.dry_run else SWEEPS
    args.sweeps = default if not args.sweep else {
        name: tuple(int(b) for b in batches.split(",")) for name, batches in (s.split("=", 1) for s in args.sweep)}
    from trainers.llm import shipped_config

    for name in args.sweeps:
        if shipped_config(name) is None:
            p.error(f"--sweep {name}: not a shipped LLM config (trainers/configs/llm/)")
    return args


def run_order(batches: tuple[int, ...]) -> list[int]:
    """Smallest first (the ratios' baseline), then the largest, then the rest: a budget that runs out
    early still leaves both ends of the sweep."""
    ordered = sorted(set(batches))
    return ordered[:1] + ordered[-1:] + ordered[1:-1] if len(ordered) > 1 else ordered


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
    """OutOfBudget raised in the main thread at the deadline, whatever it is doing (a compile included)."""
    def expire(signum, frame):
        raise OutOfBudget
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline - time.perf_counter()))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


def run_config(args, folder: Path, shards: str, vision: dict, llm_dir: str, batch: int):
    from trainers.config import config_from_dict

    adapter = DRY_ADAPTER if args.dry_run else ADAPTER
    run = {"out_dir": str(folder), "device": args.device, "log_every": args.timed_steps,
           "checkpoint_every": 10**9, "compile": args.compile, "compile_mode": args.compile_mode}
    return config_from_dict({
        "run": run, "vision": vision,
        "llm": {"path": llm_dir, "random_init": True, "dtype": "bfloat16" if args.device == "cuda" else "float32"},
        "adapter": adapter,
        "data": {"shards": shards, "batch_size": batch, "workers": args.workers, "max_caption_tokens": CAPTION_TOKENS,
                 "pad_to": "max"},
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


def plan_runs(args) -> list[tuple[str, int | str, bool]]:
    """(LLM, batch, synthetic) in run order; batch "best" is that LLM's fastest batch through the
    loader, known once its sweep is done."""
    plan = []
    for name, batches in args.sweeps.items():
        plan += [(name, batch, args.data == "synthetic") for batch in run_order(batches)]
        if args.data == "both":
            plan.append((name, "best", True))
    return plan


def not_fitting(rows: list[dict], name: str, plan_left: list, deadline: float, seen_shape: bool = False) -> str | None:
    """Why the next run of LLM `name` would not fit: it gets its LLM's share of the time left (a first
    run, all of it), and may take as long as that LLM's longest run so far (before its first: any).
    seen_shape: a run at a batch already measured takes its compiled code from inductor's on-disk
    cache (the CPU dry run with --compile: 3 s against 60-70 s), so as long as that LLM's quickest."""
    now = time.perf_counter()
    mine = [r["wall_s"] for r in rows if r["llm"] == name]
    estimate = min(mine) if seen_shape and mine else max(mine or [r["wall_s"] for r in rows] or [0.0])
    room = (deadline - now) / len({p[0] for p in plan_left}) if mine else deadline - now
    if room <= 0:
        return "not started: --budget-s spent"
    if estimate > room:
        return f"a run takes ~{estimate:.0f} s, {room:.0f} s of the budget left for it"
    return None


def peak_name(mfu: float | None) -> str | None:
    """The name of the peak an MFU is relative to, for metrics written without one."""
    from trainers.schedule import peak_spec

    spec = peak_spec() if mfu is not None else None
    return spec.name if spec else None


def sweep(args, folder: Path, started: float) -> tuple[list[dict], list[dict]]:
    from tests.shapes_data import write_shapes
    from trainers.llm import load_tokenizer

    deadline = started + args.budget_s
    shards = write_shapes(folder / "data", n=args.samples, per_shard=256)
    vision = {"name": "ViT-B-16", "random_init": True}
    if args.dry_run:
        from tests.tiny_clip import TINY_CONFIG, TINY_NAME

        (folder / "clip").mkdir()
        (folder / "clip" / f"{TINY_NAME}.json").write_text(json.dumps(TINY_CONFIG))
        vision = {"name": TINY_NAME, "config_dir": str(folder / "clip"), "random_init": True}
    tokenizer = load_tokenizer(next(iter(args.sweeps)))  # the shipped configs share SmolLM2's tokenizer
    plan = plan_runs(args)
    rows, skipped, llm_dirs, done = [], [], {}, 0  # done: plan entries measured or skipped
    try:
        with deadline_alarm(deadline):
            for name, batch, synthetic in plan:
                row = {"llm": name, "batch": batch, "data": "synthetic" if synthetic else "loader"}
                if batch == "best":
                    measured = [r for r in rows if r["llm"] == name and r["data"] == "loader"]
                    fastest = max(measured, key=lambda r: r["samples_per_s"], default=None)
                    batch = fastest["batch"] if fastest else None
                reason = "no batch of this LLM was measured" if batch is None else not_fitting(
                    rows, name, plan[done:], deadline, seen_shape=row["batch"] == "best")
                if reason:
                    skipped.append({**row, "batch": batch, "reason": reason})
                else:
                    if name not in llm_dirs:
                        llm_dirs[name] = write_llm_dir(folder / "llm", name, DRY_LLM if args.dry_run else {}, tokenizer)
                    config = run_config(args, folder / "runs" / f"{name}-b{batch}-{row['data']}", shards, vision,
                                        llm_dirs[name][0], batch)
                    rows.append({**row, "batch": batch, "llm_params": llm_dirs[name][1],
                                 **measure(args, config, synthetic)})
                done += 1
    except OutOfBudget:
        skipped += [{"llm": n, "batch": b, "data": "synthetic" if syn else "loader",
                     "reason": "stopped at --budget-s" if j == 0 else "not started: --budget-s spent"}
                    for j, (n, b, syn) in enumerate(plan[done:])]
    return rows, skipped


def with_ratios(rows: list[dict]) -> list[dict]:
    """Sorted by LLM (as swept) and batch; samples/s against the LLM's smallest batch through the loader."""
    order = {name: i for i, name in enumerate(dict.fromkeys(r["llm"] for r in rows))}
    rows = sorted(rows, key=lambda r: (order[r["llm"]], r["data"] != "loader", r["batch"]))
    for row in rows:
        base = min((r for r in rows if r["llm"] == row["llm"] and r["data"] == "loader"),
                   key=lambda r: r["batch"], default=None)
        row["baseline_batch"] = base["batch"] if base else None
        row["samples_per_s_ratio"] = row["samples_per_s"] / base["samples_per_s"] if base else None
    return rows


def table(report: dict) -> str:
    head = (f"{report['vision']} + {report['adapter']} + frozen LLM, all RANDOM weights; {report['device']}, "
            f"torch {report['torch']}, compile {report['compile_mode'] if report['compile'] else 'off'}"
            f"{' (DRY RUN: toy sizes, no figures)' if report['dry_run'] else ''}")
    lines = [head, f"{'llm':<14}{'batch':>6} {'data':<10}{'samples/s':>11}{'ratio':>8}{'LLM tok/s':>12}"
                   f"{'capt tok/s':>12}{'step ms':>9}{'MFU':>7}{'GiB':>7}{'wait/compute':>14}{'wall s':>8}"]
    for r in report["rows"]:
        ratio = f"{r['samples_per_s_ratio']:.2f}x" if r["samples_per_s_ratio"] is not None else "-"
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        mem = f"{r['gpu_mem_peak_gib']:.1f}" if r["gpu_mem_peak_gib"] is not None else "-"
        split = (f"{r['data_wait_s']:.2f}/{r['compute_s']:.2f}" if r["data_wait_s"] is not None
                 and r["compute_s"] is not None else "-")
        lines.append(f"{r['llm']:<14}{r['batch']:>6} {r['data']:<10}{r['samples_per_s']:>11.1f}{ratio:>8}"
                     f"{r['llm_tokens_per_s']:>12.0f}{r['caption_tokens_per_s']:>12.0f}{r['step_ms']:>9.1f}"
                     f"{mfu:>7}{mem:>7}{split:>14}{r['wall_s']:>8.1f}")
    lines += [f"ratio: samples/s against batch {r['baseline_batch']} of {r['llm']}" for r in report["rows"]
              if r["batch"] == r["baseline_batch"] and r["data"] == "loader"]
    lines += [f"skipped {s['llm']} batch {s['batch']} ({s['data']}): {s['reason']}" for s in report["skipped"]]
    peaks = {r["peak"] for r in report["rows"] if r["peak"]}
    lines += [f"MFU relative to {', '.join(sorted(peaks))}"] if peaks else []
    return "\n".join(lines)


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


def main(argv: list[str] | None = None) -> dict:
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers loads: all is local, lent GPUs reach no hub
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --dry-run for the CPU check")
    with tempfile.TemporaryDirectory(prefix="vlcurate-bench-trainer-") as tmp, nominal_cpu_peak(args.dry_run):
        rows, skipped = sweep(args, Path(tmp), started)
    report = {
        "bench": "trainer_gpu", "dry_run": args.dry_run, "random_weights": True,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        "torch": torch.__version__, "compile": args.compile, "compile_mode": args.compile_mode,
        "dtype": "bfloat16 autocast" if args.device == "cuda" else "float32",
        "vision": "ViT-B-16" if not args.dry_run else "tiny ViT",
        "adapter": f"vadapter ({(DRY_ADAPTER if args.dry_run else ADAPTER)['queries']} queries)",
        "caption_tokens": CAPTION_TOKENS, "steps": args.steps, "timed_steps": args.timed_steps,
        "llm_overrides": DRY_LLM if args.dry_run else None, "workers": args.workers,
        "budget_s": args.budget_s, "elapsed_s": time.perf_counter() - started,
        "rows": with_ratios(rows), "skipped": skipped,
    }
    text = json.dumps(report, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)
    print(table(report), file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
