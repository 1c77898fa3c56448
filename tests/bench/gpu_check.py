"""GPU check of the trainer and a model stage, as one short script (not part of `make test`).

Runs where Beam is not installed (the lent GPU machines): builds a sample pool, a tiny open_clip
model and a tiny Llama at run time, then
  1. trains the adapter VLM (vadapter, stage 2) and the stage-1 captioner for a few steps on the
     device, eager and with torch.compile, bf16 autocast on CUDA: losses finite and falling;
  2. evaluates the trained VLM (validation loss, greedy captions through the frozen LLM);
  3. scores the same samples with the CLIPScore model (filters/clipscore.py) on CPU and on the
     device (fp32 and bf16): the largest score difference.
Prints one JSON object (and writes it to --out).

  python tests/bench/gpu_check.py --device cuda --out gpu_check.json
  python tests/bench/gpu_check.py --device cpu --steps 4          # dry run anywhere
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _config(folder: Path, shards: str, clip: dict, llm: str, device: str, name: str, **sections) -> object:
    from trainers.config import config_from_dict

    data = {
        "run": {"out_dir": str(folder / name), "device": device, "log_every": 5, "checkpoint_every": 1000},
        "vision": {"name": clip["name"], "pretrained": clip["pretrained"], "config_dir": clip["config_dir"]},
        "llm": {"path": llm},
        "adapter": {"kind": "vadapter", "queries": 8, "heads": 2,
                    "tiny_lm": {"width": 64, "layers": 2, "heads": 2, "max_len": 64}},
        "data": {"shards": shards, "batch_size": 16, "workers": 2, "max_caption_tokens": 24},
        "optim": {"lr": 2e-3, "warmup_steps": 5, "steps": 40},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return config_from_dict(data).validate()


def _losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def train_checks(folder: Path, shards: str, clip: dict, llm: str, device: str, steps: int) -> dict:
    from trainers.evaluate import evaluate
    from trainers.train import train

    results = {}
    for name, sections in {
        "vlm_eager": {},
        "vlm_compiled": {"run": {"compile": True}},
        "captioner_eager": {"run": {"stage": "captioner"}},
    }.items():
        cfg = _config(folder, shards, clip, llm, device, name, optim={"steps": steps}, **sections)
        started = time.perf_counter()
        last = train(cfg)
        seconds = time.perf_counter() - started
        losses = _losses(folder / name)
        results[name] = {"seconds": round(seconds, 2), "first_loss": losses[0], "last_loss": last["loss"],
                         "finite": all(math.isfinite(x) for x in losses), "falling": last["loss"] < losses[0],
                         "skipped": last["skipped"]}
        if name == "vlm_eager":
            scores = evaluate(cfg, batches=2, beams=1)
            # no held-out split here: evaluate labels the loss train_loss (trainers/evaluate.py)
            results[name]["eval"] = {k: scores[k] for k in ("train_loss", "val_loss", "cider_d", "samples") if k in scores}
    return results


def clip_checks(pool: Path, clip: dict, device: str) -> dict:
    import tarfile

    from filters.clip_model import ClipSpec
    from filters.clipscore import SCORE, ClipScorer
    from filters.sample import Sample

    samples = []
    with tarfile.open(pool / "shards" / "00000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    for name, data in sorted(members.items()):
        key, _, ext = name.partition(".")
        if ext == "jpg" and f"{key}.txt" in members:
            try:
                caption = members[f"{key}.txt"].decode("utf-8")
            except UnicodeDecodeError:
                continue
            samples.append(Sample(key, "00000.tar", data, "jpg", caption))
    scores = {}
    for where, precision in (("cpu", "fp32"), (device, "fp32"), (device, "bf16")):
        spec = ClipSpec(clip["name"], clip["pretrained"], clip["config_dir"], None, where, precision)
        outcomes = ClipScorer(spec).score_samples([Sample(s.key, s.source, s.image, s.image_ext, s.caption)
                                                  for s in samples])
        scores[(where, precision)] = {o.key: o.annotations[SCORE] for o in outcomes if hasattr(o, "annotations")}
    base = scores[("cpu", "fp32")]
    diff = lambda other: max(abs(other[k] - base[k]) for k in base)  # noqa: E731
    return {"samples": len(base), "max_abs_diff_fp32": diff(scores[(device, "fp32")]),
            "max_abs_diff_bf16": diff(scores[(device, "bf16")])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    from pipelines.drivers.sample_data import write_pool
    from tests.tiny_clip import write_clip_checkpoint
    from tests.tiny_llm import write_tiny_llm

    folder = Path(tempfile.mkdtemp(prefix="vlcurate-gpu-check-"))
    write_pool(folder / "pool", n=200, seed=0, per_shard=100)
    shards = str(folder / "pool" / "shards" / "*.tar")
    clip = write_clip_checkpoint(folder / "clip", content_sensitive=True)
    llm = write_tiny_llm(folder / "llm", width=64, layers=2)
    report = {"device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
              "torch": torch.__version__}
    report["train"] = train_checks(folder, shards, clip, llm, args.device, args.steps)
    report["clipscore"] = clip_checks(folder / "pool", clip, args.device)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
