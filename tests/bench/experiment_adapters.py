"""Experiment (issue 6): adapters compared on the synthetic shapes captioning task, CPU scale.

Same frozen parts for every run: a tiny open_clip ViT (random, positional embeddings zeroed so it
sees content) and a tiny Llama pre-trained at start-up, then frozen. Its pre-training is
"Describe the following: CONTEXT : CAPTION" with the scene written in CONTEXT among 0-260 filler
words (tests/tiny_llm.py), so like a real LLM it can use what precedes the question: given the
scene in words it captions with loss ~0. An adapter must put the image's scene there.
Runs at equal steps, batch and learning rate: vadapter with stage 1 (captioner, same number of
steps) then stage 2; vadapter without stage 1; perceiver 6 layers x 256 queries (the baseline);
perceiver 3 x 256 (about the vadapter's trainable parameters); linear; mlp.
Every `EVAL_EVERY` steps: validation loss and greedy CIDEr-D on held-out shards. Writes the curves
to docs/images/adapter_experiment.png and prints a table.

    .venv/bin/python tests/bench/experiment_adapters.py [--steps 600 --eval-every 100] [--seed 1 --plot P]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.shapes_data import write_shapes  # noqa: E402
from tests.tiny_clip import write_clip_checkpoint  # noqa: E402
from tests.tiny_llm import context_caption_loss, write_tiny_llm  # noqa: E402
from trainers.build import build_model  # noqa: E402
from trainers.config import config_from_dict  # noqa: E402
from trainers.evaluate import evaluate  # noqa: E402
from trainers.schedule import count_params  # noqa: E402
from trainers.train import train  # noqa: E402

EVAL_EVERY = 25
# Loss per caption token of a model that knows the captions' grammar but not the image:
# "a {colour} {shape} on a {background} background <eos>" has 8 predicted tokens, three of them
# uncertain without the image: 8 colours, 4 shapes, then 7 remaining background colours.
TEXT_ONLY_FLOOR = (math.log(8) + math.log(4) + math.log(7)) / 8


def base(tmp: Path, clip: dict, llm: str, train_shards: str, eval_shards: str, steps: int, name: str,
         seed: int) -> dict:
    return {
        "run": {"out_dir": str(tmp / name), "device": "cpu", "seed": seed, "log_every": 25,
                "checkpoint_every": EVAL_EVERY, "eval_shards": eval_shards},
        "vision": {"name": clip["name"], "pretrained": clip["pretrained"], "config_dir": clip["config_dir"]},
        "llm": {"path": llm},
        "adapter": {"kind": "linear", "width": 64, "layers": 6, "queries": 256, "heads": 4,
                    "tiny_lm": {"width": 64, "layers": 2, "heads": 4, "max_len": 300}},
        "data": {"shards": train_shards, "batch_size": 32, "workers": 1, "max_caption_tokens": 12},
        "optim": {"lr": 1e-3, "warmup_steps": 10, "steps": steps, "weight_decay": 1e-4},
    }


def with_(config: dict, **changes) -> dict:
    out = json.loads(json.dumps(config))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        out[section][key] = value
    return out


def curve(config_dict: dict, steps: int) -> list[dict]:
    config = config_from_dict(config_dict).validate()
    points = []
    for step in range(EVAL_EVERY, steps + 1, EVAL_EVERY):
        ckpt = Path(config.run.out_dir) / "checkpoints" / f"step-{step:08d}"
        result = evaluate(config, str(ckpt), batches=2, out_dir=str(Path(config.run.out_dir) / "eval" / ckpt.name))
        points.append({"step": step, "val_loss": result["val_loss"], "cider_d": result["cider_d"]})
    return points


def main() -> None:
    global EVAL_EVERY
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=EVAL_EVERY)
    parser.add_argument("--seed", type=int, default=0, help="adapter initialisation and batch order (frozen parts fixed)")
    parser.add_argument("--plot", default=str(ROOT / "docs/images/adapter_experiment.png"))
    parser.add_argument("--runs", default="", help="comma-separated run names to keep (default: all)")
    args = parser.parse_args()
    EVAL_EVERY = args.eval_every
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = write_clip_checkpoint(tmp / "clip", content_sensitive=True)
        t0 = time.perf_counter()
        llm = write_tiny_llm(tmp / "llm", width=64, layers=2, pretrain_steps=1200, max_positions=512,
                             reads_context=260)
        print(f"frozen LLM pre-trained to read its context in {time.perf_counter() - t0:.1f} s; caption loss with "
              f"the scene in words: {context_caption_loss(llm, 260):.4f}", flush=True)
        train_shards = write_shapes(tmp / "train", n=2048, seed=1, per_shard=256)
        eval_shards = write_shapes(tmp / "eval", n=256, seed=2, per_shard=256)
        common = base(tmp, clip, llm, train_shards, eval_shards, args.steps, "x", args.seed)
        runs = {
            "linear": with_(common, run__out_dir=str(tmp / "linear"), adapter__kind="linear"),
            "mlp": with_(common, run__out_dir=str(tmp / "mlp"), adapter__kind="mlp"),
            "perceiver 6x256": with_(common, run__out_dir=str(tmp / "perceiver"), adapter__kind="perceiver"),
            "perceiver 3x256": with_(common, run__out_dir=str(tmp / "perceiver3"), adapter__kind="perceiver",
                                     adapter__layers=3),
            "vadapter (no stage 1)": with_(common, run__out_dir=str(tmp / "vadapter0"), adapter__kind="vadapter"),
        }
        stage1 = with_(common, run__out_dir=str(tmp / "stage1"), run__stage="captioner", adapter__kind="vadapter")
        runs["vadapter (progressive)"] = with_(common, run__out_dir=str(tmp / "vadapter1"), adapter__kind="vadapter",
                                                adapter__init_from=str(tmp / "stage1"))
        if args.runs:
            runs = {name: cfg for name, cfg in runs.items() if name in args.runs.split(",")}
        results = {}
        stage1_s = 0.0
        if "vadapter (progressive)" in runs:
            t0 = time.perf_counter()
            stage1_config = config_from_dict(stage1).validate()
            train(stage1_config)
            stage1_s = time.perf_counter() - t0
            own = evaluate(stage1_config, batches=2, out_dir=str(tmp / "stage1" / "eval"))
            print(f"stage 1 captioner alone (its tiny LM decoding, greedy): val loss {own['val_loss']:.3f}, "
                  f"CIDEr-D {own['cider_d']:.2f}", flush=True)
        for name, cfg in runs.items():
            t0 = time.perf_counter()
            config = config_from_dict(cfg).validate()
            train(config)
            seconds = time.perf_counter() - t0
            _, trainable, _, _ = build_model(config)
            results[name] = {"params": count_params(trainable, True), "seconds": seconds, "curve": curve(cfg, args.steps)}
            print(f"{name}: {seconds:.1f} s, {results[name]['curve'][-1]}", flush=True)
        print(f"stage 1 (captioner) {args.steps} steps: {stage1_s:.1f} s; text-only loss floor {TEXT_ONLY_FLOOR:.3f}")
        print(f"{'adapter':<24}{'trainable':>11}{'train s':>9}  val loss / CIDEr-D at steps {EVAL_EVERY}..{args.steps}")
        for name, r in results.items():
            points = "  ".join(f"{p['val_loss']:.3f}/{p['cider_d']:.2f}" for p in r["curve"])
            print(f"{name:<24}{r['params']:>11,}{r['seconds']:>9.1f}  {points}")
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        _plot(results, Path(args.plot))
        print(json.dumps(results))


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for name, r in results.items():
        steps = [p["step"] for p in r["curve"]]
        a.plot(steps, [p["val_loss"] for p in r["curve"]], marker="o", label=name)
        b.plot(steps, [p["cider_d"] for p in r["curve"]], marker="o", label=name)
    a.axhline(TEXT_ONLY_FLOOR, color="grey", linestyle="--", linewidth=1, label="text-only floor")
    a.set(xlabel="step", ylabel="validation loss (log scale)", title="validation loss", yscale="log")
    b.set(xlabel="step", ylabel="CIDEr-D (greedy)", title="CIDEr-D")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    main()
