"""One self-contained HTML page: inline CSS, images and plots as data URIs, no script, nothing fetched.

Everything a page shows that came from the data (captions, keys, reasons, URLs) is untrusted web text
and goes through `esc`; the page never links to a remote resource, so it renders the same offline,
from a cluster's file browser, or from an object store's console.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

from PIL import Image

THUMB_SIDE = 128  # px; JPEG at quality 70 keeps a thumbnail near 4 KB
_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 16px 24px;
       color: #1b1f24; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 12px; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee;
       text-align: left; vertical-align: top; } td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.stage td { font-weight: 600; background: #f6f8fa; }
pre { background: #f6f8fa; padding: 8px 12px; overflow-x: auto; font-size: 12px; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; } .cell { width: 136px; font-size: 11px; overflow-wrap: anywhere; }
.cell img { width: 128px; height: 128px; object-fit: contain; background: #f0f0f0; display: block; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } .plots img { width: 380px; }
.note { color: #57606a; } .warn { color: #9a6700; font-weight: 600; }
nav a { margin-right: 12px; }
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail(image: Image.Image, side: int = THUMB_SIDE) -> str:
    """A small JPEG of an already decoded image, as a data URI."""
    image = image.convert("RGB")
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    return data_uri(buffer.getvalue(), "image/jpeg")


def figure_uri(fig) -> str:
    """A matplotlib figure as a PNG data URI (then closed: reports draw many)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return data_uri(buffer.getvalue(), "image/png")


def table(headers: list[str], rows: list[list[object]], numeric: set[int] = frozenset(),
          row_classes: list[str] | None = None) -> str:
    head = "".join(f'<th class="n">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = "".join(f'<td class="n">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def grid(cells: list[tuple[str | None, str]]) -> str:
    """Thumbnails with a caption under each; (None, text) for a record with no image to show."""
    parts = []
    for uri, caption in cells:
        image = f'<img src="{uri}" alt="">' if uri else '<div class="note">(no image)</div>'
        parts.append(f'<div class="cell">{image}{esc(caption)}</div>')
    return f'<div class="grid">{"".join(parts)}</div>'


@dataclass
class Page:
    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, heading, html)

    def add(self, anchor: str, heading: str, body: str) -> None:
        if body:
            self.sections.append((anchor, heading, body))

    def render(self, subtitle: str = "") -> str:
        nav = "".join(f'<a href="#{a}">{esc(h)}</a>' for a, h, _ in self.sections)
        body = "".join(f'<h2 id="{a}">{esc(h)}</h2>{html_}' for a, h, html_ in self.sections)
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body>"
                f"<h1>{esc(self.title)}</h1><p class=\"note\">{esc(subtitle)}</p><nav>{nav}</nav>{body}"
                f"</body></html>\n")
