"""The dataset card every run writes: README.md in Hugging Face's dataset-card format (YAML metadata,
then Markdown), generated from the manifest (counts, the funnel, the recipe, the sources, how to load
the shards) and the `license` column of the run's metadata parquets (the licenses seen)."""

from __future__ import annotations

from collections import Counter

import fsspec
import pyarrow.parquet as pq
import yaml

from manifests.manifest import Manifest

CARD_NAME = "README.md"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return name
    return "100M<n<1B"


def licenses_seen(root: str, manifest: Manifest) -> Counter:
    """Values of the `license` field (a column the inputs brought, e.g. from a URL list) over the kept
    samples; empty when the inputs carried none."""
    seen: Counter = Counter()
    for shard in manifest.shards:
        if shard.metadata is None:
            continue
        with fsspec.open(f"{root}/{shard.metadata.name}", "rb") as f:
            table = pq.ParquetFile(f)
            if "license" in table.schema_arrow.names:
                seen.update(str(v) for v in table.read(columns=["license"]).column(0).to_pylist() if v is not None)
    return seen


def dataset_card(manifest: Manifest, licenses: Counter | None = None) -> str:
    kinds = {s.kind for s in manifest.shards} or {"sample"}
    documents = kinds == {"document"}
    header = {
        "pretty_name": manifest.recipe.get("name", "vlcurate run"),
        "license": "other",  # the sources' licenses apply; vlcurate adds none
        "task_categories": ["image-to-text", "text-to-image"],
        "size_categories": [_size_category(manifest.counts.kept)],
        "tags": ["vlcurate", "webdataset", "interleaved" if documents else "image-text-pairs"],
        # Pairs: the tars (HF's webdataset builder: images, captions, KEY.json); documents: OBELICS'
        # table. One of the two only: HF picks one builder for all of a directory's configs.
        "configs": [{"config_name": "default", "data_files": [
            {"split": "train", "path": "metadata/*.parquet" if documents else "shards/*.tar"}]}],
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
              _licenses_text(licenses or Counter()), "",
              "## Recipe", "", "```yaml", yaml.safe_dump(manifest.recipe, sort_keys=False).strip(), "```", "",
              "## Loading", "", "```python"]
    if documents:
        lines += ["import json, webdataset as wds",
                  'for sample in wds.WebDataset("shards/00000.tar"):',
                  '    doc = json.loads(sample["json"])  # OBELICS layout: texts / images / metadata / general_metadata']
    else:
        lines += ["import webdataset as wds",
                  'dataset = wds.WebDataset("shards/{00000..%05d}.tar").decode("pil").to_tuple("jpg", "txt")'
                  % max(0, len(manifest.shards) - 1),
                  "",
                  "from datasets import load_dataset  # images, captions and KEY.json",
                  'pairs = load_dataset("webdataset", data_files="shards/*.tar", split="train")']
    lines += ["", "from datasets import load_dataset  # one row per record, KEY.json's scalar fields as columns",
              'table = load_dataset("parquet", data_files="metadata/*.parquet", split="train")',
              "# or: pyarrow.dataset.dataset(\"metadata\"), duckdb: SELECT * FROM 'metadata/*.parquet'", "```", "",
              "`manifest.json` lists every file with its sha256; `vlcurate verify` re-checks them.", ""]
    return "\n".join(lines)


def _licenses_text(licenses: Counter) -> str:
    if not licenses:
        return ("Licenses: the inputs carried no `license` field. The sources' terms apply to every sample; "
                "vlcurate adds none.")
    top = ", ".join(f"`{name}` ({n:,})" for name, n in licenses.most_common(10))
    more = f", and {len(licenses) - 10} more" if len(licenses) > 10 else ""
    return (f"Licenses seen (the inputs' `license` field, kept samples): {top}{more}. The sources' terms apply; "
            "each sample's is in its `KEY.json` and the `license` column.")
