"""Files beside the shards that the tools people train with look for.

- `shards/sizes.json` ({"00000.tar": 1000, ...}): open_clip's trainer reads it from the directory of
  the first shard to know the dataset size, so `--train-num-samples` becomes optional.
- `shards/NNNNN_stats.json`: img2dataset's per-shard statistics, the files DataComp's resharder and
  other img2dataset tooling read counts from (count and successes = the samples in the shard).
Written by the curate driver once every shard exists, listed in the manifest (`index_files`).
"""

from __future__ import annotations

import json

from manifests.storage import atomic_write_bytes
from manifests.shard_format import SHARDS_DIR


def write_shard_index(root: str, shards: list[dict]) -> list[dict]:
    entries = []

    def write(name: str, payload) -> None:
        info = atomic_write_bytes(f"{root}/{name}", json.dumps(payload, indent=1, sort_keys=True).encode("utf-8"))
        entries.append({"name": name, **info})

    write(f"{SHARDS_DIR}/sizes.json", {s["name"].rsplit("/", 1)[-1]: s["samples"] for s in shards})
    for shard in shards:
        stem = shard["name"].rsplit("/", 1)[-1].removesuffix(".tar")
        n = shard["samples"]
        write(f"{SHARDS_DIR}/{stem}_stats.json", {
            "count": n, "successes": n, "failed_to_download": 0, "failed_to_resize": 0,
            "status_dict": {"success": n}, "written_by": "vlcurate curate"})
    return entries
