"""The experiment's own filtering network (DFN's idea): a small CLIP trained with open_clip on a
separate clean set, saved as config + checkpoint, and then used by the clipscore/tmars stages
exactly as downloaded weights are (recipe `model:` block; the manifest records the file's sha256).

The architecture is an open_clip model config written to a `config_dir` (NAME.json); training uses
open_clip's own model, train preprocessing and ClipLoss. `zero_shot_accuracy` measures it on
held-out scenes the way CLIP's zero-shot classification does: one prompt-ensemble embedding per
(colour, shape) concept, top-1 over the 48 concepts.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fsspec
from PIL import Image

from manifests.shard_format import MAX_PIXELS, decode_image, image_member, iter_tar_records
from manifests.storage import glob_files
from pipelines.experiment.scenes import COLOURS, CONCEPTS, SIZES, read_concepts

CLIP_NAME = "mini-datacomp-filter-clip"

# Why this size: training gets ~2-4 minutes on 2 CPU cores, and the vision tower is most of the
# cost. Scenes are flat shapes in 8 colours, so 64 px with 8 px patches (an 8x8 grid; a count-3 small
# shape still covers a patch) keeps them recognisable, and the VLM trainer, which takes this tower's
# patch tokens as its frozen vision encoder, gets 64 tokens an image. 3 layers of width 128 (4 heads)
# train at ~0.35 s a step of 128 on 2 idle cores. Average pooling and fixed 2D sin-cos positions
# ("better plain ViT baselines") learn faster from scratch than a class token and learned positions:
# at 400 steps, colour accuracy 0.87 vs 0.82 at the same cost. Captions are short (at most ~25 BPE
# tokens), so the text tower is 2 layers over 32 positions; it keeps open_clip's default tokenizer and
# its real 49,408-token vocabulary, so any caption tokenizes as it would for a downloaded model (the
# clipscore stage's get_tokenizer(NAME) reads context_length from this config).
CLIP_CONFIG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 3, "head_width": 32,
                   "pool_type": "avg", "pos_embed_type": "sin_cos_2d"},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 2},
}
# Zero-shot prompts, ensembled per concept as CLIP does: "a {size} {colour} {shape} on a {background}
# background" over both sizes and every background the scene world allows (any colour but the
# object's). Captions always name a background, so a bare "a red star" is off-distribution for a model
# trained only on them (measured after 400 steps: top-1 0.13 and colour 0.67 with bare prompts, 0.16
# and 0.82 with this ensemble); averaging over backgrounds marginalises them out instead of guessing one.
TEMPLATE = "a {size} {colour} {shape} on a {background} background"
DEFAULT_STEPS = 400  # 150 steps reached half the colour accuracy of 400 (0.30 vs 0.67, class-token ViT)
# Shape stays near chance at 400 steps (0.20 of 6) because random batches never need it: colour,
# background, size and count tell 128 captions apart (loss 0.21). Batches built from runs of 16 pairs
# sharing colour and background (NegCLIP-style hard negatives by composition) were tried and measured
# worse: shape 0.21, colour 0.50, loss 1.37 at 400 steps (1 thread, the default run's clean/held-out sets).
DEFAULT_BATCH = 128


def write_clip_config(config_dir: str | Path, config: dict | None = None, name: str = CLIP_NAME) -> Path:
    """CONFIG_DIR/NAME.json, the file open_clip.add_model_config reads (as clip_model.register_configs does)."""
    directory = Path(config_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(config or CLIP_CONFIG, indent=1))
    return path


# ---------------------------------------------------------------- data
Pairs = Iterable[tuple[Image.Image | bytes, str]]


def read_pairs(data: str | Pairs, shortest_side: int | None = None) -> list[tuple[Image.Image, str]]:
    """(image, caption) pairs from a glob of webdataset tars (KEY.jpg + KEY.txt, read and decoded as
    every reader of a shard does) or given directly; records without a decodable image or a caption
    are skipped (the clean set has none; a reader should not die on one). shortest_side: shrink each
    image as it is read (a 20,000-image clean set at 200-400 px would otherwise hold ~5 GB)."""
    def kept(image, caption):
        if isinstance(image, bytes):
            image = decode_image(image, MAX_PIXELS)
        if not isinstance(image, Image.Image) or not caption:
            return None
        image = image.convert("RGB")
        return (_shrink(image, shortest_side) if shortest_side else image), caption

    if not isinstance(data, str):
        return [pair for pair in (kept(im, cap) for im, cap in data) if pair is not None]
    paths = glob_files(data)
    if not paths:
        raise FileNotFoundError(f"{data!r} matches no shards")
    pairs = []
    for path in paths:
        with fsspec.open(path, "rb") as f:
            for record in iter_tar_records(f, max_member_bytes=64 << 20):
                ext = image_member(record.parts)
                caption = record.parts.get("txt", b"").decode("utf-8", "replace").strip()
                pair = kept(record.parts[ext], caption) if ext is not None else None
                if pair is not None:
                    pairs.append(pair)
    return pairs


def _shrink(image: Image.Image, side: int) -> Image.Image:
    """Shortest side down to `side` (never up), as the model's inference resize does."""
    w, h = image.size
    scale = side / min(w, h)
    if scale >= 1:
        return image
    return image.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.BICUBIC)


# ---------------------------------------------------------------- training
def _lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_filter_clip(data: str | Pairs, out_dir: str | Path, steps: int = DEFAULT_STEPS,
                      batch_size: int = DEFAULT_BATCH, seed: int = 0, device: str = "cpu", lr: float = 2e-3,
                      config: dict | None = None, name: str = CLIP_NAME, threads: int | None = None) -> dict[str, Any]:
    """Trains the filtering CLIP on `data` (a tar glob or (image, caption) pairs) and writes
    OUT/NAME.json + OUT/NAME.pt. Returns the recipe's `model:` block plus `stats` (drop it before
    putting the block in a recipe: `{k: v for k, v in result.items() if k != "stats"}`).

    Deterministic on the CPU for a seed: weights, data order and augmentation all come from torch's
    seeded generators in this one process (no loader workers).

    threads: torch's intra-op threads while training (restored after; None leaves them). On a
    machine whose cores are busy with other processes, 2 spinning OpenMP threads made a step of the
    default model 5x slower than 1 thread did (3.4 s vs 0.66 s measured), and a tiny model's 20x."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(data, Path(out_dir), steps, batch_size, seed, device, lr, config, name)
    finally:
        torch.set_num_threads(previous)


def _train(data, out: Path, steps: int, batch_size: int, seed: int, device: str, lr: float, config: dict | None,
           name: str) -> dict[str, Any]:
    import open_clip
    import torch

    started = time.perf_counter()
    write_clip_config(out, config, name)
    open_clip.add_model_config(out)
    torch.manual_seed(seed)
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)  # open_clip warns "initialized randomly": training from scratch is the point
    try:
        model, preprocess_train, _ = open_clip.create_model_and_transforms(name, device=device, output_dict=True)
    finally:
        logging.disable(disabled)
    tokenizer = open_clip.get_tokenizer(name)
    model.train()

    # Images shrunk once to the model's input side, so the per-step train preprocessing (open_clip's:
    # a random-resized crop of 90-100% of the area, normalise; no flips, which would break "to the
    # left of") works on small images.
    side = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    pairs = read_pairs(data, shortest_side=side)
    if len(pairs) < 2:
        raise ValueError(f"a CLIP needs at least 2 training pairs, got {len(pairs)}")
    images = [im for im, _ in pairs]
    tokens = tokenizer([cap for _, cap in pairs])
    read_s = time.perf_counter() - started

    batch_size = min(batch_size, len(pairs))
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # sin-cos positions are fixed
    decay = [p for n, p in trained if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in trained if not (p.ndim >= 2 and "embedding" not in n)]
    # open_clip's recipe: no weight decay on gains, biases, embeddings and logit_scale.
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.loss.ClipLoss()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pairs), generator=generator)
    cursor, losses = 0, []
    warmup = max(1, steps // 10)
    for step in range(steps):
        if cursor + batch_size > len(order):  # a new epoch: a new permutation, never a partial batch
            order, cursor = torch.randperm(len(pairs), generator=generator), 0
        index = order[cursor:cursor + batch_size]
        cursor += batch_size
        pixels = torch.stack([preprocess_train(images[i]) for i in index.tolist()]).to(device)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        output = model(pixels, tokens[index].to(device))
        loss = loss_fn(output["image_features"], output["text_features"], output["logit_scale"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # CLIP clamps its temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())

    checkpoint = out / f"{name}.pt"
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    # {"state_dict": ...} of plain tensors: what open_clip.load_checkpoint reads with weights_only=True.
    torch.save({"state_dict": state}, checkpoint)
    tail = max(1, min(10, steps // 5))
    stats = {"steps": steps, "batch_size": batch_size, "pairs": len(pairs), "seed": seed, "device": device,
             "first_loss": sum(losses[:tail]) / tail, "last_loss": sum(losses[-tail:]) / tail,
             "read_s": round(read_s, 2), "train_s": round(time.perf_counter() - started - read_s, 2)}
    return {"name": name, "pretrained": str(checkpoint), "config_dir": str(out), "stats": stats}


# ---------------------------------------------------------------- evaluation
def zero_shot_accuracy(model_block: dict, data: str | Pairs, device: str = "cpu",
                       batch_size: int = 128) -> dict[str, Any]:
    """CLIP zero-shot over the 48 (colour, shape) concepts on held-out (image, caption) pairs (a
    tar glob or pairs): each concept's text embedding is the normalised mean of its TEMPLATE
    prompts' embeddings; the true concept is read from the caption (scenes.read_concepts: its main object).

    Returns accuracy (top-1 of 48; chance 1/48), colour_accuracy and shape_accuracy (the predicted
    concept's colour / shape is right), n, and matched_cosine / shuffled_cosine: the mean CLIPScore
    of each image with its own caption and with the next image's caption, which is what the
    clipscore stage has to separate."""
    import numpy as np

    scorer = _scorer(model_block, device)
    pairs = [(im, cap, read_concepts(cap)) for im, cap in read_pairs(data)]
    pairs = [(im, cap, (c["colour"], c["shape"])) for im, cap, c in pairs if c is not None]
    if not pairs:
        raise ValueError("no held-out pair has a caption naming a concept")
    prompts = [[TEMPLATE.format(size=z, colour=c, shape=s, background=b) for z in SIZES for b in COLOURS if b != c]
               for c, s in CONCEPTS]
    classes = np.stack([scorer.embed_texts(per_concept).mean(axis=0) for per_concept in prompts])
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    image_emb = np.concatenate([scorer.embed_images([im for im, _, _ in pairs[i:i + batch_size]])
                                for i in range(0, len(pairs), batch_size)])
    text_emb = np.concatenate([scorer.embed_texts([cap for _, cap, _ in pairs[i:i + batch_size]])
                               for i in range(0, len(pairs), batch_size)])
    predicted = [CONCEPTS[i] for i in (image_emb @ classes.T).argmax(axis=1)]
    truth = [concept for _, _, concept in pairs]
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    return {"n": len(pairs), "chance": 1 / len(CONCEPTS),
            "accuracy": mean([p == t for p, t in zip(predicted, truth)]),
            "colour_accuracy": mean([p[0] == t[0] for p, t in zip(predicted, truth)]),
            "shape_accuracy": mean([p[1] == t[1] for p, t in zip(predicted, truth)]),
            "matched_cosine": mean((image_emb * text_emb).sum(axis=1)),
            "shuffled_cosine": mean((image_emb * np.roll(text_emb, -1, axis=0)).sum(axis=1))}


def _scorer(model_block: dict, device: str):
    """The clipscore stage's own scorer (same loading, preprocessing, tokenizer; load_clip's cache
    knows a checkpoint rewritten in place by its size and mtime)."""
    from filters.clip_model import ClipSpec
    from filters.clipscore import ClipScorer

    spec = ClipSpec(model_block["name"], model_block["pretrained"], model_block.get("config_dir"), device=device)
    return ClipScorer(spec)


def main(argv: list[str] | None = None) -> None:
    """Measure on the experiment's own sets (pool.py): python -m pipelines.experiment.filter_clip WORKDIR"""
    import argparse

    import torch

    from pipelines.experiment.pool import write_clean, write_heldout

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("workdir")
    parser.add_argument("--clean", type=int, default=4000)
    parser.add_argument("--heldout", type=int, default=480)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    for name, write, n in (("clean", write_clean, args.clean), ("heldout", write_heldout, args.heldout)):
        if not (work / name / "shards").is_dir():
            write(work / name, n, args.seed)
    cpu, wall = time.process_time(), time.perf_counter()
    block = train_filter_clip(f"{work}/clean/shards/*.tar", work / "clip", args.steps, args.batch_size, args.seed,
                              args.device, threads=args.threads)
    stats = block.pop("stats") | {"process_cpu_s": round(time.process_time() - cpu, 1),
                                  "threads": args.threads or torch.get_num_threads()}
    zero_shot = zero_shot_accuracy(block, f"{work}/heldout/shards/*.tar", args.device)
    stats["total_wall_s"] = round(time.perf_counter() - wall, 1)
    print(json.dumps({"model": block, "train": stats, "zero_shot": zero_shot}, indent=1))


if __name__ == "__main__":
    main()
