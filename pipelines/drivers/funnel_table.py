"""The funnel table printed at the end of every run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from manifests.manifest import Manifest


def funnel_table(manifest: Manifest) -> Table:
    table = Table(title=f"funnel: {manifest.recipe.get('name', '')}", title_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("reason", no_wrap=True)
    table.add_column("in", justify="right")
    table.add_column("rejected", justify="right")
    table.add_column("kept", justify="right")
    several_kinds = len({row.kind for row in manifest.funnel}) > 1
    for stage in manifest.funnel:
        name = f"{stage.stage} [{stage.kind}]" if several_kinds else stage.stage
        table.add_row(name, "", f"{stage.input:,}", f"{stage.rejected:,}", f"{stage.kept:,}")
        for reason, n in sorted(stage.reasons.items(), key=lambda kv: -kv[1]):
            table.add_row("", reason, "", f"{n:,}", "")
        # Conversions and edits are not rejections: shown beside them, counted apart.
        if stage.converted:
            table.add_row("", "(converted to another kind)", "", f"-{stage.converted:,}", "")
        if stage.produced:
            table.add_row("", "(produced from another kind)", "", f"+{stage.produced:,}", "")
        for reason, n in sorted(stage.edits.items(), key=lambda kv: -kv[1]):
            table.add_row("", f"edit: {reason}", "", f"{n:,} edits", "")
    c = manifest.counts
    table.add_section()
    table.add_row("total", "", f"{c.input:,}", f"{c.rejected:,}", f"{c.kept:,}")
    return table


def print_summary(manifest: Manifest, manifest_url: str, console: Console | None = None) -> None:
    console = console or Console(stderr=False)
    console.print(funnel_table(manifest))
    shard_bytes = sum(s.bytes for s in manifest.shards)
    console.print(
        f"{len(manifest.shards)} shard(s), {kept_text(manifest)}, {shard_bytes / 1e6:.1f} MB; "
        f"{manifest.counts.rejected:,} rejections in {len(manifest.rejected)} file(s); "
        f"{manifest.timings_s['total']:.1f} s\nmanifest: {manifest_url}"
    )


def kept_text(manifest: Manifest) -> str:
    """'275 samples', '12 documents': what the shards hold, by kind."""
    kinds = {s.kind for s in manifest.shards} or {"sample"}
    return ", ".join(f"{sum(s.samples for s in manifest.shards if s.kind == k):,} {k}s" for k in sorted(kinds))
