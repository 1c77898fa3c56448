"""Atomic writes, the Sample/Rejection encoding, keyed randomness and the funnel arithmetic."""

from __future__ import annotations

import hashlib

import pytest

from filters.keyed_random import key_hash, key_uniform
from filters.sample import Rejection, Sample
from manifests.manifest import AccountingError, Counts, build_funnel, check_accounting, counts_by_kind
from manifests.storage import atomic_open, atomic_write_bytes


def test_atomic_write_appears_whole(tmp_path):
    info = atomic_write_bytes(str(tmp_path / "d/x.bin"), b"hello")
    assert (tmp_path / "d/x.bin").read_bytes() == b"hello"
    assert info == {"bytes": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}


def test_failed_atomic_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_open(str(tmp_path / "x.bin")) as out:
            out.write(b"partial")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_sample_encoding_round_trips_without_pickle():
    sample = Sample(key="k/1", source="s.tar", image=b"\x00\xffjpeg", image_ext="jpg", caption="café ☕",
                    url=None, meta={"a": [1, 2], "b": None}, annotations={"score": 0.25})
    data = sample.to_bytes()
    assert b"pickle" not in data and Sample.from_bytes(data) == sample
    no_image = Sample(key="k", source="s", image=None)
    assert Sample.from_bytes(no_image.to_bytes()).image is None
    empty_image = Sample(key="k", source="s", image=b"")
    assert Sample.from_bytes(empty_image.to_bytes()).image == b""
    rejection = Rejection.of(sample, "heuristics", "image_empty", 3)
    assert Rejection.from_bytes(rejection.to_bytes()) == rejection and rejection.detail == "3"


def test_keyed_randomness_is_a_pure_function_of_key_seed_and_purpose():
    assert key_hash("k", 0) == key_hash("k", 0)
    assert len({key_hash("k", 0), key_hash("k", 1), key_hash("k", 0, "other"), key_hash("j", 0)}) == 4
    draws = [key_uniform(f"key{i}", 0) for i in range(20_000)]
    assert all(0 <= u < 1 for u in draws) and abs(sum(draws) / len(draws) - 0.5) < 0.01


def test_funnel_and_accounting():
    funnel = build_funnel(["read", "heuristics", "sink"], {"sample": 10},
                          {("read", "sample", "x"): 1, ("heuristics", "sample", "a"): 2, ("heuristics", "sample", "b"): 3})
    assert [(f.stage, f.input, f.rejected, f.kept) for f in funnel] == \
        [("read", 10, 1, 9), ("heuristics", 9, 5, 4), ("sink", 4, 0, 4)]
    check_accounting(Counts(input=10, kept=4, rejected=6))
    with pytest.raises(AccountingError, match="input 10 \\+ produced 0 != kept 5 \\+ rejected 6"):
        check_accounting(Counts(input=10, kept=5, rejected=6))
    with pytest.raises(AccountingError, match="not in the run's order"):
        build_funnel(["read"], {"sample": 1}, {("ghost", "sample", "x"): 1})


def test_funnel_counts_conversions_and_edits_per_kind():
    """10 documents: 2 rejected, 1 paragraph edited out of a kept one, 8 converted into 20 pairs,
    of which the next stage rejects 5. Nothing is lost: per kind, input + produced = kept +
    rejected + converted."""
    reasons = {("docs", "document", "too_short"): 2, ("pairs", "sample", "blurry"): 5}
    tallies = {("docs", "document", "edit", "boilerplate_paragraph"): 1,
               ("to_pairs", "document", "converted", "to_sample"): 8,
               ("to_pairs", "sample", "produced", "from_document"): 20}
    funnel = build_funnel(["read", "docs", "to_pairs", "pairs", "sink"], {"document": 10}, reasons, tallies)
    rows = [(f.stage, f.kind, f.input, f.rejected, f.converted, f.produced, f.kept) for f in funnel]
    assert rows == [("read", "document", 10, 0, 0, 0, 10), ("docs", "document", 10, 2, 0, 0, 8),
                    ("to_pairs", "sample", 0, 0, 0, 20, 20), ("to_pairs", "document", 8, 0, 8, 0, 0),
                    ("pairs", "sample", 20, 5, 0, 0, 15), ("sink", "sample", 15, 0, 0, 0, 15)]
    assert funnel[1].edits == {"boilerplate_paragraph": 1}
    by_kind = counts_by_kind({"document": 10}, {"sample": 15}, reasons, tallies)
    assert by_kind["document"] == Counts(input=10, kept=0, rejected=2, converted=8)
    assert by_kind["sample"] == Counts(input=0, kept=15, rejected=5, produced=20)
    for kind, counts in by_kind.items():
        check_accounting(counts, kind)
    with pytest.raises(AccountingError, match="sample records broken"):
        check_accounting(by_kind["sample"].model_copy(update={"kept": 14}), "sample")
