"""MetaCLIP: metadata building, the automaton against a naive reference (property-based), and
balancing on Beam (binomial bounds, runner independence, accounting)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.metaclip import MetadataMatcher
from filters.metadata_sources import MetadataSourceError, wordnet_lemmas
from manifests.manifest import read_manifest
from manifests.verify import verify_dataset
from manifests.recipe import parse_recipe
from pipelines.drivers.curate import curate
from pipelines.drivers.metadata import build_metadata, counts_path
from tests.model_inputs import jpeg, scene, write_records

ROOT = Path(__file__).parents[1]


# ---------------------------------------------------------------- the reference, from the rule's text
def reference_spacing(text: str) -> str:
    text = " " + text + " "
    for p in [",", ".", ";", ":", "?", "!", "`"]:
        text = text.replace(p, " " + p + " ")
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def reference_match(caption: str, entries: list[str]) -> list[int]:
    spaced = reference_spacing(caption)
    return [i for i, entry in enumerate(entries) if " " + entry + " " in spaced]


ALPHABET = "ab c.,;:?!`\t\n\rÄé日-'"
words = st.text(alphabet=ALPHABET, min_size=0, max_size=6)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), entries=st.lists(words, min_size=1, max_size=12))
def test_automaton_agrees_with_the_naive_reference(data, entries):
    # Captions built from entries (so matches, overlaps and nesting happen) mixed with noise.
    pieces = data.draw(st.lists(st.one_of(st.sampled_from(entries), words), max_size=8))
    separators = data.draw(st.lists(st.sampled_from([" ", "", ", ", ".", "\t", "  ", "!"]),
                                    min_size=len(pieces), max_size=len(pieces)))
    caption = "".join(p + s for p, s in zip(pieces, separators))
    assert MetadataMatcher(entries).match(caption) == reference_match(caption, entries)


@pytest.mark.parametrize("caption, entries, expected", [
    ("a red car.", ["red car", "car", "red", "car."], [0, 1, 2]),  # nested; "car." never matches
    ("New York, New York!", ["New York", "York", "new york"], [0, 1]),  # case-sensitive, repeated
    ("tab\tseparated\nlines", ["tab", "separated lines", "lines"], [0, 1, 2]),
    ("ice cream cone", ["ice cream", "cream cone", "ice", "cream"], [0, 1, 2, 3]),  # overlapping
    ("café au lait", ["café", "au lait", "cafe"], [0, 1]),
    ("dup dup", ["dup", "x", "dup"], [0, 2]),  # a repeated entry matches under every id
    ("`quoted`", ["quoted", "`quoted`"], [0]),
])
def test_known_cases(caption, entries, expected):
    assert MetadataMatcher(entries).match(caption) == expected == reference_match(caption, entries)


# ---------------------------------------------------------------- metadata building
WNDB_HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def _fake_wordnet(folder: Path) -> Path:
    folder.mkdir()
    lines = {
        "data.noun": ["00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which exists",
                      "00001930 03 n 02 physical_entity 0 Entity 1 000 | an entity that has physical existence"],
        "data.verb": ["00001740 29 v 01 breathe 0 000 | draw air"],
        "data.adj": ["00001740 00 a 0a " + " ".join(f"w{i} 0" for i in range(9)) + " galore(ip) 0 000 | many"],
        "data.adv": ["00001740 02 r 01 entity 0 000 | repeated on purpose"],
    }
    for name, content in lines.items():
        (folder / name).write_text(WNDB_HEADER + "\n".join(content) + "\n", encoding="utf-8")
    return folder


def test_wordnet_lemmas_from_the_database_format(tmp_path):
    lemmas = list(wordnet_lemmas(_fake_wordnet(tmp_path / "wn")))
    assert lemmas == ["entity", "physical entity", "Entity", "breathe", *(f"w{i}" for i in range(9)), "galore", "entity"]


def test_build_metadata_dedups_in_stable_order_with_counts(tmp_path):
    extra = tmp_path / "bigrams.txt"
    extra.write_text("ice cream\nentity\n\nred car\n", encoding="utf-8")
    out = tmp_path / "metadata.json"
    summary = build_metadata(str(out), str(_fake_wordnet(tmp_path / "wn")), min_zipf=7.0, extra=[str(extra)])
    entries = json.loads(out.read_text())
    assert entries[:5] == ["entity", "physical entity", "Entity", "breathe", "w0"]
    assert entries[-2:] == ["ice cream", "red car"] and len(entries) == len(set(entries))
    assert "the" in entries  # the most frequent English word is above Zipf 7
    counts = json.loads(Path(counts_path(str(out))).read_text())
    assert counts == summary and counts["sources"]["wordnet"] == {"read": 15, "added": 14}
    assert counts["sources"][f"file:{extra}"] == {"read": 3, "added": 2}
    assert counts["entries"] == len(entries)


@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_a_compressed_name_is_written_compressed_and_read_by_the_stage(tmp_path, suffix):
    from filters.metaclip import load_entries

    out = tmp_path / f"metadata.json{suffix}"
    build_metadata(str(out), None, min_zipf=7.0, extra=[])
    assert out.read_bytes()[:1] != b"["  # compressed, as its name says
    assert "the" in load_entries(str(out))
    assert counts_path(str(out)) == str(tmp_path / "metadata.counts.json")


def test_sources_that_give_no_entry_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="gave no entries .* lower --min-zipf"):
        build_metadata(str(tmp_path / "m.json"), None, min_zipf=10.0)
    assert not (tmp_path / "m.json").exists()


def test_missing_wordnet_says_how_to_install_and_other_sources_still_work(tmp_path):
    with pytest.raises(MetadataSourceError, match="apt-get install wordnet-base"):
        build_metadata(str(tmp_path / "m.json"), str(tmp_path / "nowhere"), min_zipf=7.0)
    assert not (tmp_path / "m.json").exists()
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "metadata", "build", str(tmp_path / "m.json"),
                             "--wordnet-dir", str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "--no-wordnet" in result.stderr
    build_metadata(str(tmp_path / "m.json"), None, min_zipf=6.0)
    assert "the" in json.loads((tmp_path / "m.json").read_text())


@pytest.mark.skipif(not os.path.isfile("/usr/share/wordnet/data.noun"), reason="Debian wordnet-base not installed")
def test_real_wordnet_database():
    lemmas = list(wordnet_lemmas())
    assert len(lemmas) > 200_000 and "physical entity" in lemmas and "hot dog" in lemmas


# ---------------------------------------------------------------- balancing on Beam
HEAD = {"alpha": 300, "beta": 120}
TAIL = {f"tail{i}": 5 for i in range(20)}
T = 50


@pytest.fixture(scope="module")
def balanced_pool(tmp_path_factory):
    folder = tmp_path_factory.mktemp("metaclip")
    image = jpeg(scene(0, size=(64, 64)))
    records, n = [], 0
    for entry, count in {**HEAD, **TAIL}.items():
        for _ in range(count):
            records.append((f"{n:06d}", image, f"a photo of {entry}."))  # exactly one entry per caption
            n += 1
    records += [("nomatch1", image, "nothing here"), ("nomatch2", image, None)]
    write_records(folder / "in", records)
    (folder / "metadata.json").write_text(json.dumps([*HEAD, *TAIL, "unused entry"]))
    return folder


def _balance(folder: Path, name: str, beam_args=None, mode="balance"):
    recipe = parse_recipe({"name": "t", "seed": 11, "stages": [
        {"metaclip": {"metadata": str(folder / "metadata.json"), "t": T, "mode": mode}}],
        "output": {"samples_per_shard": 100}})
    out = folder / name
    curate(recipe, f"{folder}/in/*.tar", str(out), beam_args=beam_args, overwrite=True)
    m = read_manifest(str(out))
    rows = [r for s in m.shards for r in pq.read_table(out / s.metadata.name).to_pylist()]
    rejected = [r for f in m.rejected for r in pq.read_table(out / f.name).to_pylist()]
    return m, rows, rejected, out


def test_balanced_counts_are_within_binomial_bounds(balanced_pool):
    m, rows, rejected, out = _balance(balanced_pool, "memory")
    assert m.counts.input == sum(HEAD.values()) + sum(TAIL.values()) + 2 == m.counts.kept + m.counts.rejected
    kept = Counter(json.loads(r["json"])["caption"].split()[-1].rstrip(".") for r in rows)
    for entry, count in HEAD.items():  # Binomial(count, t / count): mean t
        p = T / count
        sd = math.sqrt(count * p * (1 - p))
        assert abs(kept[entry] - T) <= 5 * sd, (entry, kept[entry])
    assert all(kept[entry] == count for entry, count in TAIL.items())  # under t: all kept
    reasons = Counter(r["reason"] for r in rejected)
    assert reasons["metaclip_no_match"] == 2
    assert reasons["metaclip_balanced_out"] == sum(HEAD.values()) - kept["alpha"] - kept["beta"]
    report = m.reports["metaclip"]
    assert report["entries_matched"] == 22 and report["entries_over_t_before"] == 2
    assert report["head_before"][:2] == [["alpha", 300], ["beta", 120]]
    assert {f.name for f in m.report_files} == {"reports/metaclip_entry_counts.parquet",
                                                "reports/metaclip_entry_counts.png"}
    counts = pq.read_table(out / "reports/metaclip_entry_counts.parquet").to_pylist()
    assert {r["entry"]: (r["count_before"], r["count_after"]) for r in counts}["alpha"] == (300, kept["alpha"])
    assert verify_dataset(str(out)) == []
    page = (out / "report.html").read_text()  # the report shows the log-log plot and the head/tail summary
    assert '<h2 id="metaclip">MetaCLIP balancing</h2>' in page and 'alt="MetaCLIP entry counts"' in page
    assert "entries_over_t_before: 2" in page


def test_same_keys_on_both_runners_and_across_runs(balanced_pool):
    _, first, _, _ = _balance(balanced_pool, "again")
    _, second, _, _ = _balance(balanced_pool, "again2")
    _, multi, _, _ = _balance(balanced_pool, "multi", ["--direct_running_mode=multi_processing",
                                                       "--direct_num_workers=2"])
    keys = sorted(r["key"] for r in first)
    assert keys == sorted(r["key"] for r in second) == sorted(r["key"] for r in multi)


def test_annotate_mode_drops_nothing(balanced_pool):
    m, rows, rejected, _ = _balance(balanced_pool, "annotate", mode="annotate")
    assert m.counts.rejected == 0 and m.counts.kept == m.counts.input
    by_key = {r["key"]: json.loads(r["json"])["metaclip_entries"] for r in rows}
    assert by_key["nomatch1"] == [] and by_key["000000"] == [0]


def test_metadata_build_help_has_an_example():
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "metadata", "build", "--help"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "Example:" in result.stdout and "--no-wordnet" in result.stdout


def test_an_empty_metadata_list_or_entry_is_refused(tmp_path):
    """An empty entry is MetaCLIP's " " + "" + " ": it matched nearly every caption and undid the balance."""
    import json

    from filters.metaclip import load_entries

    for entries, shown in [([], "is an empty list"), (["dog", " ", "cat"], "entry 1 is empty")]:
        path = tmp_path / "m.json"
        path.write_text(json.dumps(entries))
        with pytest.raises(ValueError, match=shown):
            load_entries(str(path))
