"""Dedup of interleaved documents, OBELICS' three rules (build_obelics/06, 08, 09), as pure pieces
the Beam stage (pipelines/stages/document_dedup.py) groups by:

- the same page twice: documents with the same normalized URL keep one copy, the smallest key (the
  choice depends on the copies, not on arrival order; OBELICS kept the latest crawl);
- template text: a paragraph found in `min_documents` or more documents of one domain (cookie
  banners, bylines, newsletter boxes) is removed from all of them (OBELICS: more than 2 occurrences
  of the exact paragraph within the domain, 09_05);
- ubiquitous images: an image URL found in more than `max_documents` documents (OBELICS: > 10,
  06_02) is removed from every document (share buttons, spacers, avatars).
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit, urlunsplit

from filters.document import Document, ImageNode, TextNode

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str | None) -> str | None:
    """Scheme and host lower-cased, default port, fragment and empty query dropped; path and query
    kept as they are (they name different pages)."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def paragraph_fingerprint(text: str) -> str:
    """Exact match, as OBELICS: the paragraph's text, whitespace-normalized."""
    return hashlib.sha1(" ".join(text.split()).encode("utf-8")).hexdigest()[:20]


def paragraph_fingerprints(doc: Document) -> set[str]:
    return {paragraph_fingerprint(n.text) for n in doc.nodes if isinstance(n, TextNode)}


def image_urls(doc: Document) -> set[str]:
    return {n.url for n in doc.nodes if isinstance(n, ImageNode) and n.url}


def remove_nodes(doc: Document, paragraphs: set[str], images: set[str]) -> dict[str, int]:
    """Drop the flagged paragraphs and images from doc; the edits, by reason."""
    kept, edits = [], {}
    for node in doc.nodes:
        if isinstance(node, TextNode) and paragraphs and paragraph_fingerprint(node.text) in paragraphs:
            edits["paragraph_repeated_in_domain"] = edits.get("paragraph_repeated_in_domain", 0) + 1
        elif isinstance(node, ImageNode) and node.url in images:
            edits["image_url_too_common"] = edits.get("image_url_too_common", 0) + 1
        else:
            kept.append(node)
    doc.nodes = kept
    return edits


def emptied(doc: Document, min_text_nodes: int, min_images: int) -> tuple[str, str] | None:
    """A document the removals left without enough text or images (OBELICS' final cleaning, 10)."""
    texts = sum(1 for n in doc.nodes if isinstance(n, TextNode))
    images = sum(1 for n in doc.nodes if isinstance(n, ImageNode))
    if texts < min_text_nodes:
        return "no_text_left", f"{texts} paragraphs left (at least {min_text_nodes} wanted)"
    if images < min_images:
        return "no_image_left", f"{images} images left (at least {min_images} wanted)"
    return None
