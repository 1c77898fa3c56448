"""The curation pipeline end to end on DirectRunner (in memory and multi_processing)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml

from manifests.manifest import read_manifest
from manifests.verify import verify_dataset
from manifests.recipe import load_recipe, parse_recipe
from pipelines.drivers.curate import CurateError, curate, expand_inputs
from tests.conftest import POOL_RECORDS

ROOT = Path(__file__).parents[1]
QUICKSTART = load_recipe(ROOT / "manifests/recipes/quickstart.yaml")

# What the quickstart recipe must do with each kind of record sample-data writes.
EXPECTED = {
    "good": {"kept"}, "good_png": {"kept"}, "good_webp": {"kept"}, "text_in_image": {"kept"},
    "html_alt_text": {"kept"}, "exif_rotated": {"kept"},
    "non_english": {"language_not_allowed", "caption_too_few_words"},  # Chinese has no spaces
    "too_short": {"caption_too_few_words", "caption_too_short"},
    "boilerplate": {"caption_boilerplate", "caption_too_few_words"},
    "low_complexity": {"complexity_too_few_objects"},
    "tiny_image": {"image_too_small"},
    "extreme_aspect": {"image_aspect_too_extreme"},
    "resized_banner": {"image_aspect_too_extreme"},
    "gif_format": {"image_format_not_allowed"},
    "duplicate_image": {"duplicate_image"},
    "corrupt_jpeg": {"image_truncated"},
    "zero_byte_image": {"image_empty"},
    "missing_caption": {"caption_missing"},
    "non_utf8_caption": {"caption_not_utf8"},
    "huge_header": {"image_too_many_pixels"},
}


def kept_keys(root: Path) -> list[str]:
    return sorted(k for s in read_manifest(str(root)).shards for k in
                  pq.read_table(root / s.metadata.name, columns=["key"]).column("key").to_pylist())


def rejection_rows(root: Path) -> list[dict]:
    return [row for f in read_manifest(str(root)).rejected for row in pq.read_table(root / f.name).to_pylist()]


@pytest.fixture(scope="module")
def run(pool_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("curated")
    curate(QUICKSTART, f"{pool_dir}/shards/*.tar", str(out), overwrite=True)
    return out


def test_every_input_is_kept_or_rejected_exactly_once(run, pool_dir):
    m = read_manifest(str(run))
    assert m.counts.input == POOL_RECORDS == m.counts.kept + m.counts.rejected
    kept, rejected = kept_keys(run), [r["key"] for r in rejection_rows(run)]
    assert len(kept) == m.counts.kept and len(rejected) == m.counts.rejected
    pool_keys = {k for f in (pool_dir / "shards").glob("*.parquet") for k in pq.read_table(f).column("key").to_pylist()}
    assert sorted(kept + rejected) == sorted(pool_keys)
    assert [f.stage for f in m.funnel] == ["read", "heuristics", "sink"]
    assert m.funnel[-1].kept == m.counts.kept and m.funnel[0].input == m.counts.input


def test_each_kind_of_record_ends_where_it_should(run, pool_dir):
    kinds = {r["key"]: r["kind"] for f in (pool_dir / "shards").glob("*.parquet") for r in pq.read_table(f).to_pylist()}
    assert set(kinds.values()) == set(EXPECTED), "the pool must exercise every kind"
    outcome = {k: "kept" for k in kept_keys(run)}
    outcome.update({r["key"]: r["reason"] for r in rejection_rows(run)})
    wrong = {k: (kinds[k], outcome[k]) for k in kinds if outcome[k] not in EXPECTED[kinds[k]]}
    assert not wrong


def test_rejection_rows_carry_source_url_and_detail(run):
    rows = {r["reason"]: r for r in rejection_rows(run)}
    assert rows["image_aspect_too_extreme"]["detail"].endswith("> 3")
    assert rows["caption_not_utf8"]["stage"] == "read" and rows["caption_not_utf8"]["source"].endswith(".tar")
    assert rows["duplicate_image"]["url"].startswith("http://")


def test_shards_are_readable_by_webdataset_and_match_the_manifest(run):
    m = read_manifest(str(run))
    assert verify_dataset(str(run)) == []
    for shard in m.shards:
        data = (run / shard.name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (shard.bytes, shard.sha256)
        samples = list(wds.WebDataset(str(run / shard.name), shardshuffle=False).decode("pil"))
        assert len(samples) == shard.samples
        for s in samples:
            image = s.get("jpg") or s.get("png") or s.get("webp")
            assert image.size[0] > 0 and s["txt"] == s["json"]["caption"] and s["json"]["caption_lang"] == "en"
    sizes = [s.samples for s in m.shards]
    per_shard = QUICKSTART.output.samples_per_shard
    assert all(n == per_shard for n in sizes[:-1]) and 0 < sizes[-1] <= per_shard


def test_verify_notices_a_changed_shard(run, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shard = copy / read_manifest(str(copy)).shards[0].name
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert verify_dataset(str(copy)) == [f"{shard.relative_to(copy)}: sha256 differs from the manifest"]


def test_multi_processing_runner_gives_identical_shards(run, pool_dir, tmp_path):
    curate(QUICKSTART, f"{pool_dir}/shards/*.tar", str(tmp_path / "mp"),
           beam_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    a, b = read_manifest(str(run)), read_manifest(str(tmp_path / "mp"))
    assert kept_keys(run) == kept_keys(tmp_path / "mp")
    assert [s.sha256 for s in a.shards] == [s.sha256 for s in b.shards]
    assert a.funnel == b.funnel and b.versions["direct_running_mode"] == "multi_processing"


def test_output_directory_rules(run, pool_dir, tmp_path):
    with pytest.raises(CurateError, match="not empty; pass --overwrite"):
        curate(QUICKSTART, f"{pool_dir}/shards/*.tar", str(run))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(CurateError, match="did not write"):
        curate(QUICKSTART, f"{pool_dir}/shards/*.tar", str(foreign), overwrite=True)
    assert (foreign / "notes.txt").exists()


def test_input_pattern_rules(pool_dir):
    with pytest.raises(CurateError, match="matches no files"):
        expand_inputs(f"{pool_dir}/nothing/*.tar")
    with pytest.raises(CurateError, match=r"a folder: --input is a glob of files, e\.g\. '.*/shards/\*\.tar'"):
        expand_inputs(f"{pool_dir}/shards")
    with pytest.raises(CurateError, match=r"e\.g\. '.*/shards/\*\.warc\.gz'"):
        expand_inputs(f"{pool_dir}/shards/", "document")
    with pytest.raises(CurateError, match="metadata parquet"):
        expand_inputs(f"{pool_dir}/shards/*")


def test_no_stages_keeps_every_readable_record_in_parquet_input(tmp_path):
    import pyarrow as pa
    from tests.conftest import make_image
    rows = [{"key": f"p{i}", "jpg": make_image(colour=(i, i, i)), "caption": f"caption {i}"} for i in range(7)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    recipe = parse_recipe({"name": "none", "output": {"samples_per_shard": 3}})
    result = curate(recipe, str(tmp_path / "in.parquet"), str(tmp_path / "out"))
    assert (result.manifest.counts.kept, [s.samples for s in result.manifest.shards]) == (7, [3, 3, 1])


def test_killed_run_leaves_no_manifest_and_no_partial_shard(pool_dir, tmp_path):
    recipe = yaml.safe_load((ROOT / "manifests/recipes/quickstart.yaml").read_text())
    recipe["output"]["samples_per_shard"] = 1  # many shard writes to land the kill between
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "curate", str(tmp_path / "r.yaml"),
         "--input", f"{pool_dir}/shards/*.tar", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "shards").glob("*.tar"))) >= 3:
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "manifest.json").exists()
    for shard in (out / "shards").glob("*.tar"):  # every visible shard is whole
        with tarfile.open(shard) as tar:
            names = tar.getnames()
        assert len(names) == 3 and all(n.split(".")[0] == names[0].split(".")[0] for n in names)
        assert (out / "metadata" / shard.with_suffix(".parquet").name).exists()
    leftovers = [p.name for folder in ("shards", "metadata") if (out / folder).exists()
                 for p in (out / folder).iterdir() if not p.name.endswith((".tar", ".parquet"))]
    assert all(name.startswith(".") and ".tmp-" in name for name in leftovers)
    with pytest.raises(CurateError, match="holds an interrupted run .* --overwrite"):  # a rerun is refused until --overwrite
        curate(QUICKSTART, f"{pool_dir}/shards/*.tar", str(out))


def test_verify_reads_shards_through_the_shard_format(run, tmp_path):
    """verify counts each shard's records while hashing it, and --deep decodes every image with the
    format's one decode: a shard whose bytes match a (wrong) manifest is still caught."""
    import hashlib
    import io
    import shutil

    from manifests.shard_format import pair_rows, write_pair_tar
    from tests.conftest import make_sample

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert verify_dataset(str(copy), deep=True) == []
    manifest = read_manifest(str(copy))
    samples = [make_sample("a"), make_sample("b")]
    samples[1].image = b"\xff\xd8\xff\xe0 not really a jpeg"
    buffer = io.BytesIO()
    write_pair_tar(buffer, samples, pair_rows(samples))
    (copy / manifest.shards[0].name).write_bytes(buffer.getvalue())
    entry = manifest.shards[0].model_copy(update={"bytes": len(buffer.getvalue()), "samples": 3,
                                                   "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()})
    forged = manifest.model_copy(update={"shards": [entry, *manifest.shards[1:]],
                                         "counts": manifest.counts.model_copy(update={"kept": manifest.counts.kept - manifest.shards[0].samples + 3})})
    (copy / "manifest.json").write_text(forged.model_dump_json())
    assert verify_dataset(str(copy)) == [f"{entry.name}: 2 records, manifest says 3"]
    deep = verify_dataset(str(copy), deep=True)
    assert len(deep) == 2 and f"{entry.name}: 2 records, manifest says 3" in deep
    assert any(p.startswith(f"{entry.name}: b.jpg: image_undecodable") for p in deep)


def test_verify_reports_files_the_manifest_does_not_list(run, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "shards" / "99999.tar").write_bytes(b"from another run")
    (copy / "notes.txt").write_text("mine")
    assert verify_dataset(str(copy)) == ["notes.txt: not listed in the manifest (another run's file, or one added later)",
                                         "shards/99999.tar: not listed in the manifest (another run's file, or one added later)"]


def test_overwrite_never_deletes_what_vlcurate_did_not_write(run, pool_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "shards" / "my_notes.txt").write_text("keep me")
    with pytest.raises(CurateError, match="holds files vlcurate did not write \\(shards/my_notes.txt\\)"):
        curate(QUICKSTART, f"{pool_dir}/shards/*.tar", str(copy), overwrite=True)
    assert (copy / "shards" / "my_notes.txt").exists() and (copy / "manifest.json").exists()
    # In a finished run only what its manifest lists is ours, whatever a file is named.
    (copy / "shards" / "my_notes.txt").unlink()
    for name in ("reports/my_analysis.ipynb", "shards/00099.tar", "metadata/00777.parquet"):
        (copy / name).parent.mkdir(exist_ok=True)
        (copy / name).write_text("mine")
        with pytest.raises(CurateError, match=f"holds files vlcurate did not write \\({name}\\)"):
            curate(QUICKSTART, f"{pool_dir}/shards/*.tar", str(copy), overwrite=True)
        assert (copy / name).exists() and (copy / "manifest.json").exists()
        (copy / name).unlink()
    # Inputs inside the output would be deleted by --overwrite (and read as their own output): refused.
    with pytest.raises(CurateError, match="--input matches files inside --output"):
        curate(QUICKSTART, f"{copy}/shards/*.tar", str(copy), overwrite=True)
    assert (copy / "shards" / "00000.tar").exists()


def test_a_second_run_into_a_locked_directory_stops_naming_the_holder(pool_dir, tmp_path):
    import json as _json
    import socket

    out = tmp_path / "out"
    out.mkdir()
    holder = {"host": "other-machine", "pid": 4242, "since_utc": "2026-11-28T00:00:00+00:00", "command": "vlcurate curate x"}
    (out / ".vlcurate.lock").write_text(_json.dumps(holder))
    with pytest.raises(CurateError, match="being written by another run: pid 4242 on other-machine"):
        curate(QUICKSTART, f"{pool_dir}/shards/*.tar", str(out))
    assert not (out / "shards").exists()
    # A lock left by a dead process on this machine is taken over, and released at the end.
    (out / ".vlcurate.lock").write_text(_json.dumps({**holder, "host": socket.gethostname(), "pid": 2 ** 22 + 1}))
    curate(QUICKSTART, f"{pool_dir}/shards/*.tar", str(out))
    assert (out / "manifest.json").exists() and not (out / ".vlcurate.lock").exists()


def test_a_run_leaves_no_temporary_directories_behind(pool_dir, tmp_path):
    import os
    import tempfile

    before = set(os.listdir(tempfile.gettempdir()))
    curate(QUICKSTART, f"{pool_dir}/shards/00000.tar", str(tmp_path / "out"))
    assert set(os.listdir(tempfile.gettempdir())) - before == set()


def test_an_output_that_cannot_be_written_stops_in_one_line_before_reading(pool_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for output, said in ((blocker, "a file is in the way"), (blocker / "run", "a file is in the way"),
                         (Path("/proc/vlcurate-no-such-dir/run"), "cannot write the output")):
        if not Path("/proc").is_dir() and str(output).startswith("/proc"):
            continue
        with pytest.raises(CurateError, match=said) as caught:
            curate(QUICKSTART, f"{pool_dir}/shards/00000.tar", str(output))
        assert "\n" not in str(caught.value)
    assert blocker.read_text() == "not a directory"
