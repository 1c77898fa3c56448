"""Property: good records mixed with arbitrary hostile ones (random bytes as images, any unicode in
captions, deep/huge/odd JSON, odd member names, truncated files) never take a run down. The run
finishes, input == kept + rejected, every good record is kept, and nothing is written outside OUT."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from manifests.manifest import read_manifest
from manifests.recipe import parse_recipe
from pipelines.drivers.curate import curate

RECIPE = parse_recipe({"name": "hostile", "stages": [{"heuristics": {
    "image": {"min_side": 8}, "complexity": {"enabled": False}, "boilerplate": {"enabled": False}}}]})


def _png(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24 + i % 5, 24), (i * 37 % 256, i * 91 % 256, 200)).save(buffer, "PNG")
    return buffer.getvalue()


GOOD = [(f"good{i:03d}", _png(i), f"a photo of {i} red circles on a blue background") for i in range(6)]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=False),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=20)
hostile_json = st.one_of(
    json_value.map(lambda v: json.dumps(v).encode()),
    st.integers(30, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),  # deep
    st.integers(4301, 6000).map(lambda n: b'{"original_width": ' + b"9" * n + b"}"),  # huge int
    st.sampled_from([b'{"url": "\\ud800"}', b'{"\\udfff": 1}', b'{"original_width": 1e999}',
                     b'{"original_width": 99999999999999999999, "original_height": 3}', b"[1, 2]", b"\xff\xfe"]),
    st.binary(max_size=64),
)
member_name = st.one_of(st.sampled_from(["../escape", "/abs/x", "a b", "dir//x", "ok/../x", "x\n", "é", "."]),
                        st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s))
hostile_record = st.fixed_dictionaries({
    "key": member_name,
    "image": st.one_of(st.none(), st.binary(max_size=200), st.just(_png(99)[:40]), st.just(b"")),
    "caption": st.one_of(st.none(), st.binary(max_size=60), st.text(max_size=60).map(
        lambda t: t.encode("utf-8", "surrogatepass"))),
    "json": st.one_of(st.none(), hostile_json),
})


def _write_tar(path, good, hostile, truncate_at: float | None) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for key, image, caption in good:
            add(f"{key}.png", image)
            add(f"{key}.txt", caption.encode())
        for record in hostile:
            if record["image"] is not None:
                add(f"{record['key']}.jpg", record["image"])
            if record["caption"] is not None:
                add(f"{record['key']}.txt", record["caption"])
            if record["json"] is not None:
                add(f"{record['key']}.json", record["json"])
    data = buffer.getvalue()
    if truncate_at is not None:
        data = data[: int(len(data) * truncate_at)]
    path.write_bytes(data)


def _write_parquet(path, hostile) -> None:
    keys = [r["key"] for r in hostile]
    images = [r["image"] for r in hostile]
    captions = [None if r["caption"] is None else r["caption"].decode("utf-8", "replace") for r in hostile]
    pq.write_table(pa.table({"key": pa.array(keys, pa.string()), "jpg": pa.array(images, pa.binary()),
                             "caption": pa.array(captions, pa.string())}), path)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile=st.lists(hostile_record, min_size=1, max_size=8),
       truncate_at=st.one_of(st.none(), st.floats(0.05, 0.95)))
def test_hostile_records_never_take_a_run_down(tmp_path_factory, hostile, truncate_at):
    work = tmp_path_factory.mktemp("hostile")
    (work / "in").mkdir()
    _write_tar(work / "in" / "00000.tar", GOOD, [], None)  # good records, whole file
    _write_tar(work / "in" / "00001.tar", [], hostile, truncate_at)  # hostile ones, maybe truncated
    _write_parquet(work / "in" / "00002.parquet", hostile)
    before = {p for p in work.rglob("*")}

    curate(RECIPE, f"{work}/in/*", str(work / "out"))

    m = read_manifest(str(work / "out"))
    assert m.counts.input == m.counts.kept + m.counts.rejected
    kept = {json.loads(j)["key"] for s in m.shards for j in pq.read_table(work / "out" / s.metadata.name)["json"].to_pylist()}
    assert {key for key, _, _ in GOOD} <= kept
    rejected = [r for f in m.rejected for r in pq.read_table(work / "out" / f.name).to_pylist()]
    assert all(r["reason"] for r in rejected)
    written = {p for p in work.rglob("*")} - before
    assert all(p == work / "out" or (work / "out") in p.parents for p in written)
