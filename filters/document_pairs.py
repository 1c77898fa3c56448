"""Documents to image-text pairs, so the pair stages (CLIPScore, T-MARS, MetaCLIP) run on crawls.

Each fetched image of a document becomes one Sample. Its caption is, in the order the recipe
gives: the image's alt text, or the nearest paragraph (fewest nodes away; the one after the image
wins a tie, as a caption usually follows its picture), each only when its length is within
[min_words, max_words] (CLIP reads 77 tokens: a 500-word paragraph is not a caption). An image
without a qualifying caption makes no pair and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from filters.document import Document, ImageNode, TextNode
from filters.sample import Sample


@dataclass
class Pairs:
    samples: list[Sample] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # images that made no pair, by reason


def _fits(text: str | None, config: Any) -> bool:
    return bool(text) and config.min_words <= len(text.split()) <= config.max_words


def _nearest_paragraph(nodes: list, position: int, config: Any) -> str | None:
    for distance in range(1, config.max_distance + 1):
        for i in (position + distance, position - distance):
            if 0 <= i < len(nodes) and isinstance(nodes[i], TextNode) and _fits(nodes[i].text, config):
                return nodes[i].text
    return None


def document_pairs(doc: Document, config: Any) -> Pairs:
    pairs = Pairs()
    for position, node in enumerate(doc.nodes):
        if not isinstance(node, ImageNode):
            continue
        if node.image is None:
            pairs.skipped["image_not_fetched"] = pairs.skipped.get("image_not_fetched", 0) + 1
            continue
        caption, source = None, None
        for kind in config.caption_from:
            if kind == "alt" and _fits(node.alt_text, config):
                caption, source = node.alt_text, "alt"
            elif kind == "paragraph":
                caption, source = _nearest_paragraph(doc.nodes, position, config), "paragraph"
            if caption:
                break
        if not caption:
            pairs.skipped["image_without_caption"] = pairs.skipped.get("image_without_caption", 0) + 1
            continue
        meta = {"document_key": doc.key, "document_url": doc.url, "position": position, "caption_source": source,
                **{k: v for k, v in node.meta.items() if isinstance(v, (str, int, float, bool))}}
        if node.alt_text:
            meta["alt_text"] = node.alt_text
        pairs.samples.append(Sample(key=f"{doc.key}_{position:04d}", source=doc.source, image=node.image,
                                    image_ext=node.image_ext, caption=caption, url=node.url, meta=meta))
    return pairs
