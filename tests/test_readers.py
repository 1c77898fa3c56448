"""Input files to Samples: every broken or hostile record becomes a read rejection, never a crash."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from filters.sample import Rejection, Sample
from manifests.recipe import InputConfig
from manifests.shard_format import split_member_name
from pipelines.io.readers import read_file
from tests.conftest import make_image

CONFIG = InputConfig()


def write_tar(path, members: list[tuple[str, bytes]], extra: list[tarfile.TarInfo] = ()) -> str:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return str(path)


def records(path, config=CONFIG) -> dict[str, Sample | Rejection]:
    out = list(read_file(str(path), config))
    return {r.key: r for r in out}


def test_member_names_follow_webdataset_keys():
    assert split_member_name("dir/000123.jpg") == ("dir/000123", "jpg")
    assert split_member_name("000123.seg.png") == ("000123", "seg.png")
    assert split_member_name("README") == ("README", "")


def test_good_record_round_trip(tmp_path):
    image = make_image()
    meta = {"url": "http://example.invalid/a.jpg", "original_width": 640}
    path = write_tar(tmp_path / "a.tar", [("000.jpg", image), ("000.txt", b"a red circle"),
                                          ("000.json", json.dumps(meta).encode())])
    sample = records(path)["000"]
    assert isinstance(sample, Sample)
    assert (sample.image, sample.image_ext, sample.caption, sample.url, sample.meta) == \
        (image, "jpg", "a red circle", meta["url"], meta)


def test_broken_records_get_specific_read_reasons(tmp_path):
    big = InputConfig(max_member_bytes=1000)
    path = write_tar(tmp_path / "b.tar", [
        ("001.jpg", b"x"), ("001.txt", "café".encode("latin-1")),  # not UTF-8
        ("002.jpg", b"x"), ("002.json", b"{not json"),
        ("003.jpg", b"x"), ("003.json", b"[1, 2]"),  # JSON but not an object
        ("004.jpg", b"x" * 5000), ("004.txt", b"too big an image"),
        ("005.jpg", b"x"), ("005.jpg", b"y"),  # the same member twice
        ("../../etc/passwd.txt", b"hostile"),  # never extracted, and rejected as a key
        ("006.txt", b"caption without image"),
    ], extra=[_symlink("007.jpg", "/etc/passwd")])
    got = records(path, big)
    assert {k: (r.stage, r.reason) for k, r in got.items() if isinstance(r, Rejection)} == {
        "001": ("read", "caption_not_utf8"),
        "002": ("read", "metadata_invalid_json"),
        "003": ("read", "metadata_invalid_json"),
        "004": ("read", "member_too_large"),
        "005": ("read", "member_repeated"),
        "../../etc/passwd": ("read", "key_invalid"),
        "007": ("read", "member_not_regular_file"),
    }
    # a record with no image still reads; the heuristic stage rejects it as image_missing
    assert isinstance(got["006"], Sample) and got["006"].image is None


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def test_truncated_tar_keeps_what_it_read_and_rejects_the_rest(tmp_path):
    members = []
    for i in range(5):
        members += [(f"{i:03d}.jpg", make_image(colour=(i * 40, 0, 0))), (f"{i:03d}.txt", b"a red circle")]
    path = write_tar(tmp_path / "t.tar", members)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2 + 100])  # mid-member
    got = list(read_file(str(cut), CONFIG))
    samples = [r for r in got if isinstance(r, Sample)]
    rejections = [r for r in got if isinstance(r, Rejection)]
    assert 1 <= len(samples) < 5
    assert [(r.key, r.reason) for r in rejections] == [("cut.tar#unreadable", "file_unreadable")]


@pytest.mark.parametrize("damage", ["at_a_member_boundary", "inside_a_header", "garbage_header", "gzip_at_a_boundary"])
def test_a_tar_cut_where_tarfile_stops_silently_still_rejects_the_rest(tmp_path, damage):
    """tarfile ends its member list without an error when a file is cut at a member boundary or
    inside a header, or meets an unreadable header after the first member: all look like the
    end-of-archive marker to it. Each must still be a file_unreadable row, not a quiet loss."""
    members = []
    for i in range(5):
        members += [(f"{i:03d}.jpg", make_image(colour=(i * 40, 0, 0))), (f"{i:03d}.txt", b"a red circle")]
    data = open(write_tar(tmp_path / "t.tar", members), "rb").read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        third = [m.offset for m in tar][4]  # the header of 002.jpg
    damaged = {"at_a_member_boundary": data[:third], "inside_a_header": data[:third + 300],
               "garbage_header": data[:third] + b"\xff" * 512 + data[third + 512:],
               "gzip_at_a_boundary": gzip.compress(data[:third])}[damage]
    cut = tmp_path / ("cut.tar.gz" if damage.startswith("gzip") else "cut.tar")
    cut.write_bytes(damaged)
    got = list(read_file(str(cut), CONFIG))
    # 001, the record being read when the file stopped, may lack members that were cut: it goes with the rest.
    assert sorted(r.key for r in got if isinstance(r, Sample)) == ["000"]
    assert [(r.key, r.reason) for r in got if isinstance(r, Rejection)] == [(f"{cut.name}#unreadable", "file_unreadable")]


def test_not_a_tar_and_empty_file(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is no tar archive" * 40)
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    for path in (junk, empty):
        (only,) = read_file(str(path), CONFIG)
        assert isinstance(only, Rejection) and only.reason == "file_unreadable"


def test_gzipped_tar(tmp_path):
    path = tmp_path / "z.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("000.jpg", make_image()), ("000.txt", b"a red circle")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert isinstance(records(path)["000"], Sample)


def test_parquet_with_image_bytes(tmp_path):
    image = make_image()
    table = pa.Table.from_pylist([
        {"key": "p0", "jpg": image, "caption": "a red circle on a table", "url": "http://x.invalid/0", "score": 0.5},
        {"key": "p1", "jpg": None, "caption": None, "url": None, "score": None},
        {"key": "../p2", "jpg": image, "caption": "x", "url": None, "score": 1.0},
    ])
    pq.write_table(table, tmp_path / "in.parquet")
    got = records(tmp_path / "in.parquet")
    assert got["p0"].image == image and got["p0"].caption == "a red circle on a table"
    assert got["p0"].meta == {"key": "p0", "url": "http://x.invalid/0", "score": 0.5}
    assert got["p1"].image is None
    assert got["../p2"].reason == "key_invalid"


def test_metadata_parquet_is_named_as_such(tmp_path):
    pq.write_table(pa.Table.from_pylist([{"key": "0", "url": "u", "caption": "c"}]), tmp_path / "00000.parquet")
    (only,) = read_file(str(tmp_path / "00000.parquet"), CONFIG)
    assert only.reason == "file_no_image_column" and "metadata parquet" in only.detail


def test_unsupported_extension(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"PK")
    (only,) = read_file(str(tmp_path / "x.zip"), CONFIG)
    assert only.reason == "file_unsupported"
