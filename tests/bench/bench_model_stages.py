"""Benchmarks 1 and 2 (issue 4): the CLIPScore stage vs a plain batched open_clip loop, and the
T-MARS stage's cost per image vs the CLIPScore stage's.

Model: ViT-B-32 architecture with random weights (saved as a checkpoint and loaded through the
stage's real path; timing only). Images: generated JPEGs, half with rendered text, under real
captions. Raw baseline: decode + preprocess + image and text forward + score, in batches of the
same size, in this process. Stage: `curate` on DirectRunner (in memory, one process), reading the
shards and writing curated shards with embeddings. Goals: stage >= 0.85x raw; T-MARS <= 2x CLIPScore.

    .venv/bin/python tests/bench/bench_model_stages.py [--images N] [--batch B] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from manifests.recipe import parse_recipe  # noqa: E402
from pipelines.drivers.curate import curate  # noqa: E402
from tests.bench.common import CAPTIONS  # noqa: E402
from tests.model_inputs import jpeg, scene, with_text, write_records  # noqa: E402
from tests.tiny_clip import write_clip_checkpoint  # noqa: E402


def captions(n: int) -> list[str]:
    if CAPTIONS.exists():
        import pyarrow.parquet as pq

        texts = pq.read_table(CAPTIONS, columns=["TEXT"]).column("TEXT").to_pylist()
        return [(t or "an image")[:300] for t in texts[:n]]
    return [f"a generated scene number {i}" for i in range(n)]


def images(n: int) -> list[bytes]:
    words = ["SALE 50%", "Golden Dragon", "OPEN", "2.98", "TERIYAKI"]
    out = []
    for i in range(n):
        img = scene(i, size=(320, 240))
        out.append(jpeg(with_text(img, words[i % 5], size=(320, 240), font_size=36) if i % 2 else img))
    return out


def raw_loop(model_block: dict, data: list[bytes], texts: list[str], batch: int, device: str) -> float:
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(
        model_block["name"], pretrained=model_block["pretrained"], device=device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_block["name"])
    started = time.perf_counter()
    scores = []
    for start in range(0, len(data), batch):
        pixels = torch.stack([preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in data[start:start + batch]])
        with torch.inference_mode():
            img = model.encode_image(pixels.to(device), normalize=True)
            txt = model.encode_text(tokenizer(texts[start:start + batch]).to(device), normalize=True)
        scores.append((img * txt).sum(-1).float().cpu().numpy())
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    assert len(np.concatenate(scores)) == len(data)
    return elapsed


def stage_run(model_block: dict, stages: list[dict], inputs: str, out: Path) -> tuple[float, float]:
    recipe = parse_recipe({"name": "bench", "stages": stages, "output": {"samples_per_shard": 1000}})
    started = time.perf_counter()
    result = curate(recipe, inputs, str(out), overwrite=True)
    assert result.manifest.counts.input == result.manifest.counts.kept + result.manifest.counts.rejected
    return time.perf_counter() - started, result.manifest.timings_s["pipeline"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=384)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = write_clip_checkpoint(tmp / "model", name="ViT-B-32")
        model["device"] = args.device
        data, texts = images(args.images), captions(args.images)
        write_records(tmp / "in", [(f"{i:09d}", b, t) for i, (b, t) in enumerate(zip(data, texts))])
        inputs = f"{tmp}/in/*.tar"
        clip = {"clipscore": {"model": model, "batch_size": args.batch}}
        tmars = {"tmars": {"batch_size": args.batch, "max_text_fraction": 1.0}}
        tmars_alone = {"tmars": {"model": model, "batch_size": args.batch, "max_text_fraction": 1.0}}

        stage_run(model, [clip], inputs, tmp / "warm")  # first-touch costs (imports, page cache) out of the way
        raw = raw_loop(model, data, texts, args.batch, args.device)
        clip_total, clip_pipeline = stage_run(model, [clip], inputs, tmp / "clip")
        raw2 = raw_loop(model, data, texts, args.batch, args.device)
        both_total, both_pipeline = stage_run(model, [clip, tmars], inputs, tmp / "both")
        alone_total, alone_pipeline = stage_run(model, [tmars_alone], inputs, tmp / "alone")
        raw_best = min(raw, raw2)
        n = args.images
        print(f"images: {n}, batch {args.batch}, device {args.device}, ViT-B-32 (random weights)")
        print(f"raw open_clip loop     : {raw_best:7.2f} s  {n / raw_best:7.1f} img/s   (runs {raw:.2f}, {raw2:.2f})")
        print(f"clipscore stage (curate): {clip_total:7.2f} s  {n / clip_total:7.1f} img/s   (pipeline {clip_pipeline:.2f} s)")
        print(f"  ratio stage/raw images/s: {raw_best / clip_total:.2f}x total, {raw_best / clip_pipeline:.2f}x "
              f"pipeline only   (goal >= 0.85x)")
        tmars_cost = both_pipeline - clip_pipeline
        print(f"clipscore + tmars      : {both_total:7.2f} s  (pipeline {both_pipeline:.2f} s)")
        print(f"tmars alone (own CLIP) : {alone_total:7.2f} s  (pipeline {alone_pipeline:.2f} s)")
        print(f"  tmars after clipscore, per image: {1000 * tmars_cost / n:.1f} ms vs clipscore "
              f"{1000 * clip_pipeline / n:.1f} ms -> {tmars_cost / clip_pipeline:.2f}x   (goal <= 2x)")
        print(f"  tmars alone, per image: {1000 * alone_pipeline / n:.1f} ms -> {alone_pipeline / clip_pipeline:.2f}x")


if __name__ == "__main__":
    main()
