"""ftfy caption repair through a whole run (DirectRunner): repaired captions are written repaired,
keep their original in caption_raw, and the funnel counts them as edits of the heuristics stage."""

from __future__ import annotations

import json
import tarfile

import pyarrow.parquet as pq
import pytest

from manifests.manifest import read_manifest
from manifests.recipe import parse_recipe
from manifests.shard_format import add_member
from pipelines.drivers.curate import curate
from tests.conftest import make_image

CAPTIONS = {
    "m1": "a cafÃ© table with a red cup on it",  # mojibake: kept, repaired
    "m2": "the naÃ¯ve painter drew a large blue house",  # mojibake: kept, repaired
    "m3": "a cafÃ© table with a red cup on it, again",  # mojibake, but m1's image: duplicate_image
    "ok": "a large red circle on a blue background",  # nothing to repair
}
COLOURS = {"m1": (200, 60, 60), "m2": (60, 200, 60), "m3": (200, 60, 60), "ok": (60, 60, 200)}


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("mojibake") / "00000.tar"
    with tarfile.open(path, "w") as tar:
        for key, caption in CAPTIONS.items():
            add_member(tar, f"{key}.jpg", make_image(colour=COLOURS[key]))
            add_member(tar, f"{key}.txt", caption.encode("utf-8"))
            add_member(tar, f"{key}.json", json.dumps({"url": f"http://x.invalid/{key}.jpg"}).encode())
    return str(path)


def written(out) -> dict[str, dict]:
    found = {}
    for shard in read_manifest(str(out)).shards:
        with tarfile.open(out / shard.name) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    record = json.loads(tar.extractfile(member).read())
                    found[record["key"]] = record
    return found


def run(pool: str, out, **caption) -> dict:
    recipe = parse_recipe({"name": "repair", "stages": [{"heuristics": {"caption": caption}}]})
    curate(recipe, pool, str(out))
    return {row.stage: row for row in read_manifest(str(out)).funnel}


def test_repaired_captions_are_written_recorded_and_counted(pool, tmp_path):
    funnel = run(pool, tmp_path / "on")
    heuristics = funnel["heuristics"]
    assert (heuristics.kept, heuristics.rejected) == (3, 1) and heuristics.reasons == {"duplicate_image": 1}
    assert heuristics.edits == {"caption_ftfy_repaired": 2}  # m3 was repaired too, but not kept
    records = written(tmp_path / "on")
    assert records["m1"]["caption"] == "a café table with a red cup on it"
    assert records["m1"]["caption_raw"] == CAPTIONS["m1"] and records["m1"]["caption_ftfy_repaired"] is True
    assert records["m2"]["caption"] == "the naïve painter drew a large blue house"
    assert "caption_raw" not in records["ok"] and "caption_ftfy_repaired" not in records["ok"]


def test_switched_off_the_captions_stay_as_read(pool, tmp_path):
    funnel = run(pool, tmp_path / "off", ftfy=False)
    assert funnel["heuristics"].edits == {}
    records = written(tmp_path / "off")
    assert records["m1"]["caption"] == CAPTIONS["m1"] and "caption_ftfy_repaired" not in records["m1"]


def test_exact_dedup_moves_only_light_copies_and_decides_each_record_once(tmp_path):
    """Copies are grouped as (key, source, id) tuples and the decision joined back (grouping whole
    samples put every copy of a popular image in one worker's memory); each record gets one decision."""
    from manifests.manifest import read_manifest
    from manifests.recipe import parse_recipe
    from pipelines.drivers.curate import curate
    from tests.model_inputs import jpeg, scene, write_records

    same, other = jpeg(scene(1, size=(320, 240))), jpeg(scene(2, size=(320, 240)))
    caption = "a red square and a blue circle on a green table"
    write_records(tmp_path / "in", [("b", same, caption), ("a", same, caption), ("c", other, caption)])
    write_records(tmp_path / "in", [("a", same, caption)], name="00001")  # the key again, in another file
    recipe = parse_recipe({"name": "t", "stages": [{"heuristics": {"exact_dedup": True}}]})
    curate(recipe, f"{tmp_path}/in/*.tar", str(tmp_path / "out"))
    manifest = read_manifest(str(tmp_path / "out"))
    rows = [r for f in manifest.rejected for r in pq.read_table(tmp_path / "out" / f.name).to_pylist()]
    assert manifest.counts.kept == 2 and manifest.counts.input == 4 == manifest.counts.kept + len(rows)
    dup = sorted((r["key"], r["reason"], r["detail"]) for r in rows)
    # the first file's `a` survives; the second file's `a` and `b` are duplicates of it
    assert dup == [("a", "duplicate_image", "a"), ("b", "duplicate_image", "a")]
