"""The dataset card every run writes: README.md in Hugging Face's dataset-card format (YAML metadata,
then Markdown), generated from the manifest alone: counts, the funnel, the recipe, the sources, and
how to load the shards."""

from __future__ import annotations

import yaml

from manifests.manifest import Manifest

CARD_NAME = "README.md"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return name
    return "100M<n<1B"


def dataset_card(manifest: Manifest) -> str:
    kinds = {s.kind for s in manifest.shards} or {"sample"}
    documents = kinds == {"document"}
    header = {
        "pretty_name": manifest.recipe.get("name", "vlcurate run"),
        "license": "other",  # the sources' licenses apply; vlcurate adds none
        "task_categories": ["image-to-text", "text-to-image"],
        "size_categories": [_size_category(manifest.counts.kept)],
        "tags": ["vlcurate", "webdataset", "interleaved" if documents else "image-text-pairs"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "shards/*.parquet"}]}],
    }
    c = manifest.counts
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
             f"# {manifest.recipe.get('name', 'vlcurate run')}", "",
             manifest.recipe.get("description") or "Curated with vlcurate.", "",
             "## Counts", "",
             f"{c.kept:,} {'documents' if documents else 'samples'} kept of {c.input:,} read "
             f"({c.rejected:,} rejected, each with its reason in `rejected/*.parquet`), in {len(manifest.shards)} "
             f"shard(s). Created {manifest.created_utc} by vlcurate {manifest.versions.get('vlcurate', '')}.", "",
             "## Funnel", "", "| stage | kind | in | rejected | kept | top reasons |", "|---|---|---|---|---|---|"]
    for row in manifest.funnel:
        top = ", ".join(f"{r} {n:,}" for r, n in sorted(row.reasons.items(), key=lambda kv: -kv[1])[:3])
        lines.append(f"| {row.stage} | {row.kind} | {row.input:,} | {row.rejected:,} | {row.kept:,} | {top} |")
    sources = manifest.inputs.get("files") or manifest.inputs.get("url_list") or manifest.inputs.get("pattern")
    if isinstance(sources, list):
        sources = ", ".join(sources[:5]) + (f", ... ({len(sources)} files)" if len(sources) > 5 else "")
    lines += ["", "## Sources", "", f"Read from: {sources or 'not recorded'}.", "",
              "Licenses: this run records none. The sources' terms apply to every sample; the inputs' own "
              "metadata (e.g. a `license` field) is kept as it came in each record's `KEY.json`.", "",
              "## Recipe", "", "```yaml", yaml.safe_dump(manifest.recipe, sort_keys=False).strip(), "```", "",
              "## Loading", "", "```python"]
    if documents:
        lines += ["import json, webdataset as wds",
                  'for sample in wds.WebDataset("shards/00000.tar"):',
                  '    doc = json.loads(sample["json"])  # OBELICS layout: texts / images / metadata / general_metadata']
    else:
        lines += ["import webdataset as wds",
                  'dataset = wds.WebDataset("shards/{00000..%05d}.tar").decode("pil").to_tuple("jpg;png;webp", "txt")'
                  % max(0, len(manifest.shards) - 1)]
    lines += ["", "from datasets import load_dataset  # the per-shard metadata parquets",
              'metadata = load_dataset("parquet", data_files="shards/*.parquet", split="train")', "```", "",
              "`manifest.json` lists every file with its sha256; `vlcurate verify` re-checks them.", ""]
    return "\n".join(lines)
