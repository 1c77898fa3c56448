"""The record kinds a curation run moves, by name.

A stage declares the kinds it accepts and produces by these names; accounting balances per kind
(input + produced = kept + rejected + converted). Grounding is not a kind: grounded captions are
annotations on a Sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from filters.document import Document
from filters.sample import Sample

SAMPLE = Sample.KIND
DOCUMENT = Document.KIND


@dataclass(frozen=True, slots=True)
class Event:
    """Something a stage counts that is not a rejection: `edit` (a part of a kept record removed or
    changed), `converted` (a record turned into records of another kind) or `produced` (a record
    made by a conversion). A stage's step returns these beside its records; the funnel sums them."""

    kind: str
    event: str
    reason: str
    n: int = 1


def edit(reason: str, n: int = 1, kind: str = DOCUMENT) -> Event:
    return Event(kind, "edit", reason, n)
