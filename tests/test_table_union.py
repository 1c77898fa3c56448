"""One parquet schema per run, from shards typed one by one: the edge cases a review found."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from filters.sample import Sample
from manifests.shard_format import pair_parquet, pair_rows
from manifests.storage import atomic_write_bytes
from manifests.table_union import unify_tables


def _unify(tmp_path, shards: list[list[Sample]]) -> list:
    entries = []
    for i, samples in enumerate(shards):
        name = f"metadata/{i:05d}.parquet"
        data = pair_parquet(samples, pair_rows(samples))
        entries.append({"name": f"shards/{i:05d}.tar", "metadata": {"name": name,
                                                                  **atomic_write_bytes(f"{tmp_path}/{name}", data)}})
    unify_tables(str(tmp_path), entries)
    schemas = []
    for entry in entries:
        data = (tmp_path / entry["metadata"]["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["metadata"]["sha256"]  # the manifest stays true
        schemas.append(pq.read_schema(io.BytesIO(data)))
    assert all(s.equals(schemas[0]) for s in schemas)
    return schemas[0]


def test_vectors_and_grit_columns_missing_from_some_shards_become_null_columns(tmp_path):
    vector = np.full(4, 0.5, dtype="<f2").tobytes()
    schema = _unify(tmp_path, [[Sample("a", "s", vectors={"clip_image_embedding": vector})],
                               [Sample("b", "s", annotations={"noun_chunks": [[0.0, 3.0, 0.1, 0.1, 0.5, 0.5, 0.9]]})],
                               [Sample("c", "s")]])
    assert str(schema.field("clip_image_embedding").type) == "list<element: halffloat>"
    assert str(schema.field("noun_chunks").type) == "list<element: list<element: double>>"
    table = ds.dataset(str(tmp_path / "metadata")).to_table()  # a null vector row reads back (it did not)
    assert table.num_rows == 3 and table.column("clip_image_embedding").to_pylist()[0] == [0.5] * 4
    assert table.column("clip_image_embedding").null_count == 2


def test_a_field_named_like_another_shards_column_stays_in_json(tmp_path):
    """An input's KEY.json `noun_chunks: null` beside grounded shards: one name, one column (it was
    two, and pyarrow.dataset refused the duplicate)."""
    schema = _unify(tmp_path, [[Sample("a", "s", annotations={"noun_chunks": [[0.0, 3.0, 0.1, 0.1, 0.5, 0.5, 0.9]]})],
                               [Sample("b", "s", meta={"noun_chunks": None, "uid": "x"})]])
    assert schema.names.count("noun_chunks") == 1 and "uid" in schema.names
    table = ds.dataset(str(tmp_path / "metadata")).to_table()
    assert table.num_rows == 2 and '"noun_chunks": null' in table.column("json").to_pylist()[1]


def test_a_shard_with_one_sample_lacking_an_embedding_reads_back(tmp_path):
    """As fixed-size lists, one null row made pyarrow (before 26) refuse the whole table."""
    vector = np.full(4, 0.25, dtype="<f2").tobytes()
    data = pair_parquet(*(lambda s: (s, pair_rows(s)))([Sample("a", "s", vectors={"clip_image_embedding": vector}),
                                                        Sample("b", "s")]))
    column = pq.read_table(io.BytesIO(data)).column("clip_image_embedding")
    assert column.to_pylist() == [[0.25] * 4, None]
