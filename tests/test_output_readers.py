"""What a curated run writes, opened as-is by the tools people use: open_clip's trainer, HF datasets
(webdataset and parquet builders, and the run directory through its dataset card), pyarrow.dataset
and duckdb. Columns users bring (uid, license, width) arrive under their own names."""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.manifest import read_manifest
from manifests.recipe import load_recipe, parse_recipe
from pipelines.drivers.curate import curate
from tests.conftest import make_image
from tests.test_cli import ROOT


@pytest.fixture(scope="module")
def run(pool_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("readers") / "curated"
    curate(load_recipe(ROOT / "manifests/recipes/quickstart.yaml"), f"{pool_dir}/shards/*.tar", str(out))
    return out


def kept_keys(run: Path) -> set[str]:
    keys = set()
    for shard in read_manifest(run).shards:
        with tarfile.open(run / shard.name) as tar:
            keys |= {m.name.split(".")[0] for m in tar}
    return keys


def test_hf_datasets_loads_every_pair_with_its_image(run, tmp_path):
    """HF's webdataset builder types columns from the first samples' member names: one image member
    name for every format means PNG and WEBP images are images too, not dropped."""
    import datasets

    manifest = read_manifest(run)
    tars = [str(run / s.name) for s in manifest.shards]
    pairs = datasets.load_dataset("webdataset", data_files=tars, split="train", cache_dir=str(tmp_path / "hf"))
    assert len(pairs) == manifest.counts.kept
    formats = {}
    for row in pairs:
        image, fields = row["jpg"], row["json"]
        assert image.size == (fields["image_width"], fields["image_height"]), row["__key__"]
        formats[fields["image_format"]] = formats.get(fields["image_format"], 0) + 1
    assert formats.get("PNG", 0) > 0 and formats.get("WEBP", 0) > 0 and formats.get("JPEG", 0) > 0
    # the run directory itself, through the dataset card's config (the tars), and the metadata parquets
    same = datasets.load_dataset(str(run), split="train", cache_dir=str(tmp_path / "hf-card"))
    table = datasets.load_dataset("parquet", data_files=str(run / "metadata" / "*.parquet"), split="train",
                                  cache_dir=str(tmp_path / "hf-meta"))
    assert len(same) == len(table) == manifest.counts.kept
    assert set(table["key"]) == set(same["__key__"]) == kept_keys(run)


def test_pyarrow_and_duckdb_open_the_metadata_directory(run):
    import duckdb
    import pyarrow.dataset as ds

    manifest = read_manifest(run)
    table = ds.dataset(run / "metadata", format="parquet").to_table()
    assert table.num_rows == manifest.counts.kept and set(table.column("key").to_pylist()) == kept_keys(run)
    assert {"image_format", "image_byte_count", "json", "clip_score"} - set(table.column_names) == {"clip_score"}
    assert table.schema.field("image_byte_count").type == pa.int64()
    assert table.schema.field("caption_lang").type == pa.string()  # a stage's annotation, as its own column
    count, total = duckdb.sql(f"select count(*), sum(image_byte_count) from '{run}/metadata/*.parquet'").fetchall()[0]
    members = 0
    for shard in manifest.shards:
        with tarfile.open(run / shard.name) as tar:
            members += sum(m.size for m in tar if m.name.endswith(".jpg"))
    assert (count, total) == (manifest.counts.kept, members)


def test_open_clip_train_reads_the_shards_with_sizes_json(run):
    """open_clip's own webdataset loader (open_clip_train.data) on our shards: sizes.json gives it the
    dataset size (no --train-num-samples), and it iterates every sample, PNG and WEBP included."""
    import open_clip
    from open_clip_train.data import get_dataset_size, get_wds_dataset

    manifest = read_manifest(run)
    shards = "::".join(str(run / s.name) for s in manifest.shards)
    assert get_dataset_size(shards) == (manifest.counts.kept, len(manifest.shards))
    stats = json.loads((run / "shards" / "00000_stats.json").read_text())
    assert stats["successes"] == manifest.shards[0].samples  # DataComp's resharder reads these
    preprocess = open_clip.image_transform(32, is_train=True)  # small images: the loader is what is tested
    args = argparse.Namespace(train_data=shards, train_num_samples=None, train_data_upsampling_factors=None,
                              dataset_resampled=False, seed=0, batch_size=1, workers=0, world_size=1,
                              distributed=False)
    loader = get_wds_dataset(args, preprocess, is_train=True, epoch=0, tokenizer=open_clip.get_tokenizer("RN50"))
    seen = sum(images.shape[0] for images, _texts in loader.dataloader)
    assert seen == manifest.counts.kept


def test_columns_users_bring_arrive_under_their_own_names(tmp_path):
    """A parquet input with DataComp-style columns: uid, license, width travel into KEY.json and become
    typed parquet columns; the dataset card lists the licenses seen; `output.image_member: original`
    keeps each format's own extension."""
    import duckdb

    formats = ["JPEG", "PNG", "WEBP"]
    rows = [{"key": f"s{i:03d}", "jpg": make_image(64 + i, 48, fmt=formats[i % 3]),
             "caption": f"a red square number {i} on a white table", "uid": f"{i:032x}",
             "license": ["cc-by-4.0", "cc0-1.0", None][i % 3], "width": 64 + i} for i in range(20)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    recipe = parse_recipe({"name": "columns", "stages": [], "output": {"samples_per_shard": 6, "image_member": "original"}})
    out = tmp_path / "out"
    curate(recipe, str(tmp_path / "in.parquet"), str(out))

    got = duckdb.sql(f"select key, uid, license, width, image_format from '{out}/metadata/*.parquet' order by key").fetchall()
    assert got == [(r["key"], r["uid"], r["license"], r["width"], ["JPEG", "PNG", "WEBP"][i % 3]) for i, r in enumerate(rows)]
    schema = pq.read_schema(out / "metadata" / "00000.parquet")
    assert schema.field("width").type == pa.int64() and schema.field("uid").type == pa.string()
    members = set()
    for tar_path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar:
                members.add(m.name.split(".", 1)[1])
                if m.name == "s001.json":
                    assert json.loads(tar.extractfile(m).read())["uid"] == rows[1]["uid"]
    assert {"jpg", "png", "webp"} <= members
    card = (out / "README.md").read_text()
    assert "`cc-by-4.0` (7)" in card and "`cc0-1.0` (7)" in card


def test_image_member_must_be_an_image_extension():
    with pytest.raises(ValueError, match="image_member must be 'original' or one of"):
        parse_recipe({"name": "x", "output": {"image_member": "exe"}})


def test_metadata_tables_share_one_schema_across_shards(tmp_path):
    """Each shard's parquet is typed from its own rows; the run settles one schema before the
    manifest, so a field missing from some shards, null in one and int in another, int here and float
    there, or a list somewhere, still reads as one table in HF, pyarrow.dataset (in any file order)
    and duckdb. Rewritten tables keep the manifest's checksums true."""
    import datasets
    import duckdb
    import pyarrow.dataset as ds

    from manifests.verify import verify_dataset
    from tests.test_readers import write_tar

    def fields(i):
        shard = i // 6
        return ({"rare": True} if i == 13 else {}) | {
            "late": None if shard == 0 else i,
            "num": i if shard == 0 else i + 0.5,
            "huge": (1 << 60) + i if shard == 0 else 0.25,
            "listy": [i] if shard == 2 else i,
        }

    members = []
    for i in range(20):
        members += [(f"s{i:03d}.jpg", make_image(64, 48)), (f"s{i:03d}.txt", f"a red square number {i}".encode()),
                    (f"s{i:03d}.json", json.dumps(fields(i)).encode())]
    write_tar(tmp_path / "in.tar", members)
    recipe = parse_recipe({"name": "schemas", "stages": [], "output": {"samples_per_shard": 6}})
    out = tmp_path / "out"
    curate(recipe, str(tmp_path / "in.tar"), str(out))

    files = sorted(str(p) for p in (out / "metadata").glob("*.parquet"))
    assert len(files) == 4
    schemas = {pq.read_schema(f) for f in files}
    assert len(schemas) == 1
    (schema,) = schemas
    assert {f.name: str(f.type) for f in schema if f.name in ("rare", "late", "num", "huge")} == \
        {"rare": "bool", "late": "int64", "num": "double", "huge": "string"}
    assert "listy" not in schema.names  # a list in one shard: `json` only, in every shard
    for order in (files, files[::-1]):
        table = ds.dataset(order, format="parquet").to_table()
        assert table.num_rows == 20 and sorted(table.column("rare").to_pylist(), key=str) == [None] * 19 + [True]
    got = duckdb.sql(f"select sum(late), count(rare), min(num) from '{out}/metadata/*.parquet'").fetchall()
    assert got == [(sum(range(6, 20)), 1, 0.0)]
    table = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert str(1 << 60) in table["huge"] and "0.25" in table["huge"]  # exact, as JSON text
    assert verify_dataset(str(out)) == []
