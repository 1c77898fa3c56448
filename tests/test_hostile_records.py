"""One bad record never takes down its file or the run (issue 13): each becomes one rejection with a
clear reason, and the good records around it are kept."""

from __future__ import annotations

import io
import json
import tarfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from filters.text_cleanup import clean_caption
from manifests.recipe import InputConfig, parse_recipe
from manifests.shard_format import add_member
from pipelines.drivers.curate import curate
from pipelines.io.readers import read_file
from manifests.manifest import read_manifest
from tests.conftest import make_image

GOOD_CAPTION = "a large red circle on a blue background"


def _tar(path, records: list[tuple[str, dict[str, bytes]]]) -> str:
    with tarfile.open(path, "w") as tar:
        for key, parts in records:
            for ext, data in parts.items():
                add_member(tar, f"{key}.{ext}", data)
    return str(path)


def _good(key: str, shade: int = 0) -> tuple[str, dict[str, bytes]]:
    return key, {"jpg": make_image(colour=(200, 60, shade)), "txt": GOOD_CAPTION.encode(), "json": json.dumps({"url": f"http://x.invalid/{key}"}).encode()}


HOSTILE_JSON = {
    "deep_500": b'{"a":' * 500 + b"1" + b"}" * 500,
    "deep_50000": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "digits_5000": b'{"original_width": ' + b"9" * 5000 + b"}",
    "surrogate_meta": b'{"note": "\\ud800"}',
    "surrogate_url": b'{"url": "http://x.invalid/\\udfff"}',
    "surrogate_key": b'{"\\ud800": 1}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_JSON))
def test_hostile_metadata_is_one_rejection_and_the_rest_of_the_file_is_read(name, tmp_path):
    path = _tar(tmp_path / "in.tar", [_good("a0"), ("bad", {"jpg": make_image(), "txt": b"x y z w",
                                                             "json": HOSTILE_JSON[name]}), _good("z9")])
    records = list(read_file(path, InputConfig()))
    assert [r.key for r in records] == ["a0", "bad", "z9"]
    bad = records[1]
    assert bad.stage == "read" and bad.reason in ("metadata_invalid_json", "metadata_too_deep",
                                                  "metadata_invalid_unicode"), bad
    assert all(not hasattr(r, "reason") for r in (records[0], records[2]))


def test_non_finite_numbers_are_read_as_null_so_the_json_written_is_json(tmp_path):
    path = _tar(tmp_path / "in.tar", [("a0", {"jpg": make_image(), "txt": GOOD_CAPTION.encode(),
                                              "json": b'{"nan": NaN, "inf": -Infinity, "big": 1e400, "ok": 1.5}'})])
    (record,) = read_file(path, InputConfig())
    assert {k: record.meta[k] for k in ("nan", "inf", "big", "ok")} == {"nan": None, "inf": None, "big": None, "ok": 1.5}
    pq.write_table(pa.table({"jpg": [make_image()], "caption": [GOOD_CAPTION], "score": [float("nan")]}),
                   tmp_path / "in.parquet")
    (row,) = read_file(str(tmp_path / "in.parquet"), InputConfig())
    assert row.meta["score"] is None


def test_captions_over_the_cap_are_rejected_on_read(tmp_path):
    long_caption = ("word " * 300_000).encode()  # 1.5 M characters: over spaCy's nlp.max_length
    path = _tar(tmp_path / "in.tar", [_good("a0"), ("long", {"jpg": make_image(), "txt": long_caption})])
    records = list(read_file(path, InputConfig()))
    assert records[1].reason == "caption_too_long" and "1,500,000 characters" in records[1].detail


def test_parquet_columns_of_the_wrong_type_are_per_record(tmp_path):
    rows = pa.table({"key": ["a", "b", "c"], "jpg": [make_image(), make_image(), make_image()],
                     "caption": [GOOD_CAPTION, GOOD_CAPTION, GOOD_CAPTION]})
    pq.write_table(rows, tmp_path / "ok.parquet")
    pq.write_table(pa.table({"key": ["s"], "jpg": ["not bytes"], "caption": [GOOD_CAPTION]}), tmp_path / "str.parquet")
    pq.write_table(pa.table({"key": ["i"], "jpg": [make_image()], "caption": [7]}), tmp_path / "int.parquet")
    pq.write_table(pa.table({"key": ["l"], "jpg": [make_image()], "caption": [["a", "b"]]}), tmp_path / "list.parquet")
    reasons = {name: [getattr(r, "reason", None) for r in read_file(str(tmp_path / f"{name}.parquet"), InputConfig())]
               for name in ("ok", "str", "int", "list")}
    assert reasons == {"ok": [None, None, None], "str": ["image_invalid_type"], "int": ["caption_invalid_type"],
                       "list": ["caption_invalid_type"]}


def test_comment_cleanup_is_linear_time():
    started = time.perf_counter()
    assert clean_caption("<!--" * 20_000 + "tail") == ""
    assert clean_caption("before <!-- hidden --> after <!--never closed") == "before after"
    assert time.perf_counter() - started < 0.5  # the lazy regex took 21 s on this input


def test_a_run_with_hostile_records_finishes_and_accounts_for_everything(tmp_path):
    records = [_good(f"g{i}", shade=40 * i) for i in range(4)]
    records += [(name, {"jpg": make_image(), "txt": GOOD_CAPTION.encode(), "json": data})
                for name, data in sorted(HOSTILE_JSON.items())]
    records.append(("huge_width", {"jpg": make_image(colour=(10, 250, 10)), "txt": GOOD_CAPTION.encode(),
                                   "json": json.dumps({"original_width": 10 ** 400, "original_height": 300}).encode()}))
    records.append(("long", {"jpg": make_image(), "txt": ("word " * 300_000).encode()}))
    _tar(tmp_path / "in.tar", sorted(records))
    recipe = parse_recipe({"name": "t", "stages": [{"heuristics": {"image": {"min_side": 100}}}]})
    curate(recipe, f"{tmp_path}/in.tar", str(tmp_path / "out"))
    m = read_manifest(str(tmp_path / "out"))
    assert m.counts.input == len(records) == m.counts.kept + m.counts.rejected
    kept = {json.loads(r)["key"] for s in m.shards for r in pq.read_table(tmp_path / "out" / s.metadata.name)["json"].to_pylist()}
    assert {f"g{i}" for i in range(4)} | {"huge_width"} <= kept  # an implausible claimed size is ignored, not fatal


def test_names_that_are_not_utf8_are_rejections_not_a_failed_run(tmp_path):
    """A tar member named with latin-1 bytes, and an input file whose own name is latin-1: Python holds
    both as lone surrogates, which no UTF-8 coder takes (the run died in Beam with no manifest)."""
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    with tarfile.open(folder / "a.tar", "w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tar:
        for key, parts in [_good("g0"), ("caf\xe9", {"jpg": make_image(), "txt": GOOD_CAPTION.encode()}),
                           _good("g1", shade=90)]:
            for ext, data in parts.items():
                add_member(tar, f"{key}.{ext}", data)
    bad_file = os.fsdecode(bytes(folder) + b"/caf\xe9.tar")  # what a glob returns for it
    _tar(bad_file, [_good("g2")])
    recipe = parse_recipe({"name": "t", "stages": [{"heuristics": {}}]})
    curate(recipe, f"{folder}/*.tar", str(tmp_path / "out"))
    m = read_manifest(str(tmp_path / "out"))
    assert (m.counts.input, m.counts.kept, m.counts.rejected) == (4, 2, 2)
    rows = pq.read_table(tmp_path / "out" / m.rejected[0].name).to_pylist()
    assert {(r["key"], r["reason"]) for r in rows} == {("caf\\xe9", "key_invalid"),
                                                      ("caf\\xe9.tar#unreadable", "file_name_not_utf8")}
    assert "caf\\xe9.tar" in " ".join(m.inputs["files"])


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A whole 256x256 JPEG whose frame header is rewritten to declare width x height."""
    import struct

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def test_a_jpeg_that_lies_about_its_size_is_truncated_not_kept(default_filter):
    """libjpeg fills a scan that ends early with grey and only warns: the size check catches it."""
    from filters.image_decode import decode_rgb
    from tests.conftest import make_sample

    liar = _jpeg_declaring(8000, 8000)
    (outcome,) = default_filter.filter_batch([make_sample(image=liar)])
    assert outcome.reason == "image_truncated" and "8000x8000" in outcome.detail
    assert decode_rgb(liar).reason == "image_truncated"  # model stages and the trainer decode the same way
    cut = make_image(640, 480)[:2000]  # a plainly cut file: PIL raises "truncated"
    (outcome,) = default_filter.filter_batch([make_sample(image=cut)])
    assert outcome.reason == "image_truncated"


def test_special_files_matched_by_input_are_reported_not_read(tmp_path, caplog):
    import os

    from manifests.storage import glob_files

    (tmp_path / "in").mkdir()
    _tar(tmp_path / "in" / "00000.tar", [_good("a0")])
    os.mkfifo(tmp_path / "in" / "00001.tar")  # reading a FIFO would block forever
    with caplog.at_level("WARNING", logger="vlcurate"):
        assert glob_files(f"{tmp_path}/in/*.tar") == [str(tmp_path / "in" / "00000.tar")]
    assert "skipping 1 special file(s)" in caplog.text and "00001.tar" in caplog.text


def test_a_sample_the_sink_cannot_write_is_rejected_and_its_shard_written(tmp_path):
    """Vectors of another length than the rest of the shard's (a stage bug, or a mixed model) are a
    rejection of that sample (`sink`), not a crash of the run."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from filters.sample import Sample
    from pipelines.beam.sink import WriteShards

    samples = []
    for i in range(5):
        s = Sample(f"k{i}", "in.tar", make_image(colour=(i * 40, 0, 0)), "jpg", GOOD_CAPTION)
        s.set_vector("clip_image_embedding", [0.1] * (8 if i != 3 else 4))
        samples.append(s)
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        infos, rejected = (p | beam.Create(samples).with_output_types(Sample)
                           | WriteShards(str(tmp_path / "out"), samples_per_shard=10, seed=0))
        _ = rejected | beam.Map(lambda r: (tmp_path / "rejected.txt").write_text(f"{r.key} {r.reason}"))
        _ = infos | beam.Map(lambda i: (tmp_path / "info.txt").write_text(str(i["samples"])))
    assert (tmp_path / "rejected.txt").read_text() == "k3 vector_length_mismatch"
    assert (tmp_path / "info.txt").read_text() == "4"


def test_an_error_on_a_group_rejects_the_records_in_it():
    """The guard also covers steps over groups (a join, a dedup group): each record in the failing
    group becomes an error rejection; other groups go on."""
    from filters.sample import Sample
    from pipelines.beam.coders import Tagged
    from pipelines.beam.routing import guarded_call

    def explode(item):
        key, group = item
        if key == "bad":
            raise KeyError("boom")
        return list(group)

    a, b, c = (Sample(k, "in.tar") for k in "abc")
    assert guarded_call(explode, ("ok", [a]), "sink") == [a]
    rejected = guarded_call(explode, ("bad", [Tagged(b), Tagged(value=3), Tagged(c)]), "sink")
    assert [(r.key, r.stage, r.reason) for r in rejected] == [("b", "sink", "error_KeyError"), ("c", "sink", "error_KeyError")]
    with pytest.raises(KeyError):  # nothing to reject: an error of ours, not of a record
        guarded_call(explode, ("bad", [1, 2]), "sink")


def test_the_output_lock_works_through_fsspec_beyond_local_disks():
    """The lock goes through fsspec's create-only "xb" mode, so any filesystem implementing it gets
    it (s3fs turns it into a conditional put, If-None-Match: *); memory:// exercises that path."""
    from pipelines.io.run_lock import RunLockedError, run_lock

    with run_lock("memory://vlc-lock-test/out") as holder:
        with pytest.raises(RunLockedError, match=f"pid {holder['pid']} on {holder['host']}"):
            with run_lock("memory://vlc-lock-test/out"):
                pass
    with run_lock("memory://vlc-lock-test/out"):  # released: the next run takes it
        pass
