"""Join records with small per-key values (a shard number, a dedup decision), fully typed.

Beam's CoGroupByKey types its values as Any, so the records would travel through its pickle
fallback (records refuse to be pickled: the run would fail). Here both sides become `Tagged`
elements (pipelines/beam/coders.py), flattened and grouped with declared types.
"""

from __future__ import annotations

import apache_beam as beam

from pipelines.beam.coders import Tagged


KeyedTagged = beam.typehints.Tuple[str, Tagged]
Joined = beam.typehints.Tuple[str, beam.typehints.Iterable[Tagged]]


def join_with_values(label: str, records, values) -> beam.PCollection:
    """(key, record) and (key, value) -> (key, [Tagged...]); `unpack` splits each group again."""
    tagged_records = records | f"{label}TagRecords" >> beam.MapTuple(
        lambda k, r: (k, Tagged(record=r))).with_output_types(KeyedTagged)
    tagged_values = values | f"{label}TagValues" >> beam.MapTuple(
        lambda k, v: (k, Tagged(value=v))).with_output_types(KeyedTagged)
    return ((tagged_records, tagged_values) | f"{label}Both" >> beam.Flatten().with_output_types(KeyedTagged)
            | f"{label}Group" >> beam.GroupByKey().with_output_types(Joined))


def paired(records: list, decisions: list, decision_order) -> list[tuple]:
    """(record, decision) per record of a joined group. Records that share a join key (one key twice
    in one file, the same content) get one decision each; which gets which is fixed by their bytes
    and `decision_order`, never by arrival order."""
    if len(records) > 1:
        records = sorted(records, key=lambda r: r.to_bytes())
        decisions = sorted(decisions, key=decision_order)
    return list(zip(records, decisions, strict=True))


def unpack(group) -> tuple[list, list]:
    """A joined group's records and values."""
    records, values = [], []
    for t in group:
        (records if t.record is not None else values).append(t.record if t.record is not None else t.value)
    return records, values
