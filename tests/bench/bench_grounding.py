"""Benchmark (issue 15): the grounding stage's throughput vs the raw detector forward on the same batches.

Model: an OWLv2-architecture detector at a realistic size (ViT of 12 layers x 384 wide on 384-pixel
inputs; random weights, saved and loaded through the stage's real path: timing only). Data: generated
scenes of coloured shapes with captions naming them. Raw baseline: the detector's `detect` (processor,
forward, post-processing) on pre-decoded images with the stage's own queries, in batches of the same
size, in this process. Stage: `curate` with a `grounding` stage on DirectRunner (one process):
reading the shard, decode, spaCy parse, WordNet, detection, NMS, referring expressions, renderings,
writing the curated shard. Goal: stage >= 0.85x raw.

    .venv/bin/python tests/bench/bench_grounding.py [--images N] [--batch B] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import io
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PIL import Image, ImageDraw  # noqa: E402

from filters.sample import Sample  # noqa: E402
from manifests.recipe import parse_recipe  # noqa: E402
from manifests.shard_format import pair_rows, write_pair_tar  # noqa: E402
from pipelines.drivers.curate import curate  # noqa: E402
from tests.colour_detector import COLOURS  # noqa: E402
from tests.test_grounding_text import DATA_NOUN, INDEX_NOUN  # noqa: E402
from tests.tiny_detectors import clip_tokenizer  # noqa: E402

SHAPES = ("square", "box", "block", "ball", "circle")


def build_detector(directory: Path) -> Path:
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer, vocab = clip_tokenizer(directory / "tokenizer-src")
    text = dict(vocab_size=vocab, hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4,
                max_position_embeddings=16, bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    vision = dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6, image_size=384,
                  patch_size=32)
    torch.manual_seed(0)
    model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=256)).eval()
    out = directory / "owlv2-bench"
    model.save_pretrained(out)
    Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 384, "width": 384}),
                   tokenizer=tokenizer).save_pretrained(out)
    return out


def samples(n: int) -> list[Sample]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        image = Image.new("RGB", (320, 240), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        names = []
        for colour in rng.sample(sorted(COLOURS), 2):
            x, y = rng.randrange(0, 240), rng.randrange(0, 160)
            draw.rectangle([x, y, x + 60, y + 60], fill=COLOURS[colour])
            names.append(f"a {colour} {rng.choice(SHAPES)}")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(Sample(f"s{i:05d}", "bench", buffer.getvalue(), "jpg", f"{names[0]} next to {names[1]} on a table"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-grounding-"))
    (work / "wordnet").mkdir()
    (work / "wordnet" / "data.noun").write_text(DATA_NOUN)
    (work / "wordnet" / "index.noun").write_text(INDEX_NOUN)
    model = build_detector(work)
    data = samples(args.images)
    (work / "in").mkdir()
    with open(work / "in" / "00000.tar", "wb") as out:
        write_pair_tar(out, data, pair_rows(data))
    config = {"detector": {"path": str(model), "device": args.device}, "wordnet_dir": str(work / "wordnet"),
              "batch_size": args.batch, "mode": "annotate", "box_threshold": 0.5}
    recipe = parse_recipe({"name": "bench-grounding", "stages": [{"grounding": config}],
                           "output": {"samples_per_shard": 10_000}})

    # Raw: the detector alone on pre-decoded images, with the queries the stage asks.
    from filters.grounding import GroundingAnnotator
    from filters.grounding_phrases import noun_chunks

    annotator = GroundingAnnotator(recipe.stages[0].config)
    images = [Image.open(io.BytesIO(s.image)).convert("RGB") for s in data]
    queries = [[c.text for c, _ in noun_chunks(doc, annotator.is_abstract, annotator.stop_nouns)]
               for doc in annotator.nlp.pipe([s.caption for s in data])]
    annotator.detector.detect(images[: args.batch], queries[: args.batch], 0.5)  # warm-up
    started = time.perf_counter()
    for i in range(0, len(images), args.batch):
        annotator.detector.detect(images[i : i + args.batch], queries[i : i + args.batch], 0.5)
    raw = time.perf_counter() - started

    curate(recipe, str(work / "in" / "*.tar"), str(work / "warm"), overwrite=True)  # warm-up: imports, caches
    started = time.perf_counter()
    result = curate(recipe, str(work / "in" / "*.tar"), str(work / "out"), overwrite=True)
    stage = time.perf_counter() - started
    assert result.manifest.counts.kept == len(data)
    print(f"grounding bench: {len(data)} images, batch {args.batch}, device {args.device}")
    print(f"  raw detector (processor + forward + post-processing): {len(data) / raw:7.2f} images/s ({raw:.2f} s)")
    print(f"  grounding stage through curate (read to shards):       {len(data) / stage:7.2f} images/s ({stage:.2f} s)")
    timings = result.manifest.timings_s
    print(f"  of which preflight (WordNet, detector files hashed) {timings['preflight']:.2f} s, Beam pipeline "
          f"{timings['pipeline']:.2f} s (model load per worker included)")
    print(f"  stage / raw throughput: {raw / stage:.2f}x  (goal >= 0.85x)")


if __name__ == "__main__":
    main()
