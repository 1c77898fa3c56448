"""The funnel table printed at the end of every run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from manifests.manifest import Manifest


def funnel_table(manifest: Manifest) -> Table:
    table = Table(title=f"funnel: {manifest.recipe.get('name', '')}", title_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for name in ("in", "rejected"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    edits = any(stage.edits for stage in manifest.funnel)
    if edits:  # parts of kept records removed: counted apart from rejections (documents only)
        table.add_column("edits", justify="right", no_wrap=True, min_width=5)
    table.add_column("kept", justify="right", no_wrap=True, min_width=4)

    def row(*cells, edit=""):
        table.add_row(*cells[:4], *((edit,) if edits else ()), cells[4])

    several_kinds = len({row.kind for row in manifest.funnel}) > 1
    for stage in manifest.funnel:
        name = f"{stage.stage} [{stage.kind}]" if several_kinds else stage.stage
        row(name, "", f"{stage.input:,}", f"{stage.rejected:,}", f"{stage.kept:,}",
            edit=f"{sum(stage.edits.values()):,}" if stage.edits else "")
        for reason, n in sorted(stage.reasons.items(), key=lambda kv: -kv[1]):
            row("", reason, "", f"{n:,}", "")
        # Conversions are not rejections: shown beside them, counted apart.
        if stage.converted:
            row("", "(converted to another kind)", "", f"-{stage.converted:,}", "")
        if stage.produced:
            row("", "(produced from another kind)", "", f"+{stage.produced:,}", "")
        for reason, n in sorted(stage.edits.items(), key=lambda kv: -kv[1]):
            row("", reason, "", "", "", edit=f"{n:,}")  # its count in the edits column says what it is
    c = manifest.counts
    table.add_section()
    row("total", "", f"{c.input:,}", f"{c.rejected:,}", f"{c.kept:,}")
    return table


def print_summary(manifest: Manifest, manifest_url: str, console: Console | None = None) -> None:
    if console is None:  # piped or logged, rich assumes 80 columns and folds reason names: allow 120
        console = Console(stderr=False)
        if not console.is_terminal:
            console = Console(stderr=False, width=120)
    console.print(funnel_table(manifest))
    shard_bytes = sum(s.bytes for s in manifest.shards)
    console.print(
        f"{len(manifest.shards)} shard(s), {kept_text(manifest)}, {shard_bytes / 1e6:.1f} MB; "
        f"{manifest.counts.rejected:,} rejections in {len(manifest.rejected)} file(s); "
        f"{manifest.timings_s['total']:.1f} s\nmanifest: {manifest_url}",
        soft_wrap=True,  # a path cut across lines cannot be copied
    )


def kept_text(manifest: Manifest) -> str:
    """'275 samples', '12 documents': what the shards hold, by kind."""
    kinds = {s.kind for s in manifest.shards} or {"sample"}
    return ", ".join(f"{sum(s.samples for s in manifest.shards if s.kind == k):,} {k}s" for k in sorted(kinds))
