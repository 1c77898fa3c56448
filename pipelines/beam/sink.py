"""Sinks: kept Samples into exact-size shards, Rejections into parquet parts.

Shard placement is a pure function of the kept keys and the seed. Each key gets a 64-bit hash; the
hash orders the whole dataset (so shards are well mixed, not in input order) and its top bits pick
one of 4,096 buckets. Only keys travel to the buckets: each bucket sorts its keys, its offset is the
sum of the smaller buckets' sizes (a side input of at most 4,096 offsets), and so every key learns its
global rank and thus its shard, rank // samples_per_shard. A join on the key brings the samples to
their shard. No step holds more than one bucket of keys or one shard of samples.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import apache_beam as beam

from filters.document import Document
from filters.keyed_random import key_hash
from filters.sample import Rejection, Sample
from manifests.document_format import document_json, write_document_shard
from manifests.shard_format import pair_rows, write_pair_shard
from pipelines.beam.coders import Tagged
from pipelines.beam.join import join_with_values, unpack
from pipelines.beam.routing import REJECTED, all_rejections, error_rejection, split
from pipelines.io.rejection_files import write_rejection_part

log = logging.getLogger("vlcurate")
SINK_STAGE = "sink"
_BUCKET_SHIFT = 64 - 12  # 4,096 buckets
FileInfo = beam.typehints.Dict[str, Any]  # a written file's manifest entry


def _order(key: str, seed: int) -> int:
    return key_hash(key, seed, "shard-order")


def _bucketed(sample: Sample | Document, seed: int) -> tuple[int, tuple[int, str]]:
    h = _order(sample.key, seed)
    return h >> _BUCKET_SHIFT, (h, sample.key)


def _offsets(sizes: list[tuple[int, int]]) -> dict[int, int]:
    """bucket -> number of keys in all smaller buckets (computed once, not per bucket)."""
    offsets, total = {}, 0
    for bucket, size in sorted(sizes):
        offsets[bucket] = total
        total += size
    return offsets


def _ranked_keys(item: tuple[int, list[tuple[int, str]]], offsets: dict[int, int], per_shard: int):
    bucket, keys = item
    offset = offsets[bucket]
    for rank, (_order_hash, key) in enumerate(sorted(set(keys)), start=offset):
        yield key, rank // per_shard


def _place(item: tuple[str, list[Tagged]]):
    """One record per key reaches its shard; other records with the same key are rejected. Which
    copy survives depends only on the copies (source file, then content), not on arrival order."""
    key, group = item
    samples, (shard,) = unpack(group)
    if len(samples) == 1:  # the usual case: no copy to choose between (and no record to re-encode)
        return [(shard, samples[0])]
    copies = sorted(samples, key=lambda s: (s.source, s.to_bytes()))
    return [(shard, copies[0]), *(Rejection.of(dup, SINK_STAGE, "duplicate_key", f"kept the copy from {copies[0].source}")
                                  for dup in copies[1:])]


class _WriteShardFn(beam.DoFn):
    """Writes one shard. Each sample is encoded first, alone and guarded: one that cannot be written
    (a vector of another length than its shard's, say) becomes its own `sink` rejection and the
    shard is written without it. Failing to write the shard itself is infrastructure: the run stops."""

    def __init__(self, root: str, seed: int, image_member: str = "jpg"):
        self.root = root
        self.seed = seed
        self.image_member = image_member

    def process(self, item: tuple[int, list[Sample]]):
        index, samples = item
        samples = sorted(samples, key=lambda s: (_order(s.key, self.seed), s.key))
        writable, rows = [], {}
        for sample in samples:
            try:
                (rows[sample.key],) = pair_rows([sample], self.image_member)  # KEY.json and the parquet row
                if sample.caption is not None:
                    sample.caption.encode("utf-8")
                if any(len(v) % 2 for v in sample.vectors.values()):
                    raise ValueError("a float16 vector with an odd number of bytes")
            except Exception as err:
                yield beam.pvalue.TaggedOutput(REJECTED, error_rejection(sample, SINK_STAGE, err))
                continue
            writable.append(sample)
        dims = {name: Counter(len(s.vectors[name]) for s in writable if name in s.vectors)
                for name in {n for s in writable for n in s.vectors}}
        for name, lengths in dims.items():  # the shard's parquet holds one vector length per column
            common = max(lengths, key=lambda n: (lengths[n], -n))
            for sample in [s for s in writable if name in s.vectors and len(s.vectors[name]) != common]:
                writable.remove(sample)
                yield beam.pvalue.TaggedOutput(REJECTED, Rejection.of(
                    sample, SINK_STAGE, "vector_length_mismatch",
                    f"{name}: {len(sample.vectors[name]) // 2} values, the shard's have {common // 2}"))
        info = write_pair_shard(self.root, index, writable, [rows[s.key] for s in writable], self.image_member)
        log.info("wrote %s: %d samples, %.1f MB", info["name"], info["samples"], info["bytes"] / 1e6)
        yield info


class _WriteDocumentShardFn(beam.DoFn):
    """Writes one shard of documents (OBELICS layout); a document that cannot be encoded is its own
    `sink` rejection, as for samples."""

    def __init__(self, root: str, seed: int):
        self.root = root
        self.seed = seed

    def process(self, item: tuple[int, list[Document]]):
        index, docs = item
        docs = sorted(docs, key=lambda d: (_order(d.key, self.seed), d.key))
        writable, layouts = [], []
        for doc in docs:
            try:
                layout = document_json(doc)
                json.dumps(layout, ensure_ascii=False).encode("utf-8")
            except Exception as err:
                yield beam.pvalue.TaggedOutput(REJECTED, error_rejection(doc, SINK_STAGE, err))
                continue
            writable.append(doc)
            layouts.append(layout)
        info = write_document_shard(self.root, index, writable, layouts)
        log.info("wrote %s: %d documents, %.1f MB", info["name"], info["samples"], info["bytes"] / 1e6)
        yield info


class WriteShards(beam.PTransform):
    """Kept records -> shards/NNNNN.tar + metadata/NNNNN.parquet (the pair layout for Samples,
    OBELICS' for Documents); outputs shard infos and `duplicate_key` rejections."""

    def __init__(self, root: str, samples_per_shard: int, seed: int, record_type: type = Sample,
                 image_member: str = "jpg"):
        super().__init__()
        self.root, self.per_shard, self.seed, self.record_type = root, samples_per_shard, seed, record_type
        self.image_member = image_member

    def expand(self, kept):
        record = self.record_type
        buckets = (
            kept
            | "OrderKey" >> beam.Map(_bucketed, seed=self.seed)
            | "KeysPerBucket" >> beam.GroupByKey()
            | "Materialize" >> beam.MapTuple(lambda b, keys: (b, list(keys)))
        )
        offsets = (
            buckets
            | "BucketSizes" >> beam.MapTuple(lambda b, keys: (b, len(set(keys))))
            | "AllSizes" >> beam.combiners.ToList()
            | "Offsets" >> beam.Map(_offsets)
        )
        key_to_shard = buckets | "Rank" >> beam.FlatMap(
            _ranked_keys, offsets=beam.pvalue.AsSingleton(offsets), per_shard=self.per_shard)
        by_key = kept | "ByKey" >> beam.Map(lambda s: (s.key, s)).with_output_types(beam.typehints.Tuple[str, record])
        placed = split(join_with_values("Join", by_key, key_to_shard), "Place", _place, stage=SINK_STAGE,
                       kind=beam.typehints.Tuple[int, record])
        writer = (_WriteDocumentShardFn(self.root, self.seed) if record is Document
                  else _WriteShardFn(self.root, self.seed, self.image_member))
        written = (
            placed.kept
            | "GroupShards" >> beam.GroupByKey().with_output_types(
                beam.typehints.Tuple[int, beam.typehints.Iterable[record]])
            | "WriteShard" >> beam.ParDo(writer)
            .with_output_types(FileInfo, **{REJECTED: Rejection}).with_outputs(REJECTED, main="infos")
        )
        return written.infos, all_rejections("SinkRejections", placed.rejected, written[REJECTED])


# ---------------------------------------------------------------- rejections
class WriteRejections(beam.PTransform):
    """Rejections -> rejected/STAGE-NNNNN.parquet, at most rows_per_file rows each."""

    def __init__(self, root: str, rows_per_file: int, seed: int):
        super().__init__()
        self.root, self.rows_per_file, self.seed = root, rows_per_file, seed

    def expand(self, rejected):
        per_stage = rejected | "PerStage" >> beam.Map(lambda r: (r.stage, 1)) | "CountStage" >> beam.CombinePerKey(sum)
        rows, seed, root = self.rows_per_file, self.seed, self.root

        def part_of(r: Rejection, counts: dict[str, int]):
            parts = -(-counts[r.stage] // rows)
            return (r.stage, key_hash(r.key, seed, "rejection-part") % parts), r

        return (
            rejected
            | "Part" >> beam.Map(part_of, counts=beam.pvalue.AsDict(per_stage)).with_output_types(
                beam.typehints.Tuple[beam.typehints.Tuple[str, int], Rejection])
            | "GroupParts" >> beam.GroupByKey().with_output_types(
                beam.typehints.Tuple[beam.typehints.Tuple[str, int], beam.typehints.Iterable[Rejection]])
            | "WriteParts" >> beam.MapTuple(lambda stage_part, rows: write_rejection_part(root, *stage_part, rows))
            .with_output_types(FileInfo)
        )
