"""MetaCLIP's run outputs: entry counts before/after balancing as parquet, a log-log plot of the
count distribution, and the head/tail summary the manifest carries. Written into reports/."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from filters.metaclip import load_entries
from filters.metaclip_balance import count_summary
from manifests.storage import atomic_write_bytes

REPORTS_DIR = "reports"
STAGE_REPORTS = "_run/reports"  # summaries the driver folds into the manifest


def write_metaclip_report(_, root: str, metadata: str, t: int, plot: bool,
                          before: list[tuple[int, int]], after: list[tuple[int, int]]) -> None:
    entries = load_entries(metadata)
    before_d, after_d = dict(before), dict(after)
    ids = sorted(before_d)
    table = pa.table({"entry_id": pa.array(ids, pa.int64()), "entry": [entries[i] for i in ids],
                      "count_before": [before_d[i] for i in ids], "count_after": [after_d.get(i, 0) for i in ids]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    files = [{"name": f"{REPORTS_DIR}/metaclip_entry_counts.parquet",
              **atomic_write_bytes(f"{root}/{REPORTS_DIR}/metaclip_entry_counts.parquet", buffer.getvalue())}]
    if plot:
        png = _plot(sorted(before_d.values(), reverse=True), sorted(after_d.values(), reverse=True), t)
        files.append({"name": f"{REPORTS_DIR}/metaclip_entry_counts.png",
                      **atomic_write_bytes(f"{root}/{REPORTS_DIR}/metaclip_entry_counts.png", png)})
    summary = {"summary": count_summary(before_d, after_d, entries, t), "files": files}
    atomic_write_bytes(f"{root}/{STAGE_REPORTS}/metaclip.json", json.dumps(summary).encode("utf-8"))


def _plot(before: list[int], after: list[int], t: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if before:
        ax.loglog(range(1, len(before) + 1), before, label="before balancing")
    if after:
        ax.loglog(range(1, len(after) + 1), after, label="after balancing")
    ax.axhline(t, color="grey", linestyle="--", linewidth=1, label=f"t = {t:,}")
    ax.set_xlabel("entry rank")
    ax.set_ylabel("samples matching the entry")
    ax.set_title("MetaCLIP entry counts")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
