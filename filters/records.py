"""The record kinds a curation run moves, by name.

A stage declares the kinds it accepts and produces by these names; accounting balances per kind
(input + produced = kept + rejected + converted). Grounding is not a kind: grounded captions are
annotations on a Sample.
"""

from __future__ import annotations

from filters.document import Document
from filters.sample import Sample

SAMPLE = Sample.KIND
DOCUMENT = Document.KIND
