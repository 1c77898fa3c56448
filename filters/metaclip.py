"""MetaCLIP substring matching (Xu et al. 2024), exactly, at Aho-Corasick speed.

An entry matches a caption iff " entry " is a substring of the caption after MetaCLIP's spacing:
wrap it in spaces, put spaces around , . ; : ? ! and backtick, turn tab/newline/CR into spaces.
Case-sensitive. An automaton of every " entry " finds all (also overlapping) occurrences in one
pass over the caption instead of one substring search per entry.
"""

from __future__ import annotations

import json

PUNCTUATION_TO_WRAP = (",", ".", ";", ":", "?", "!", "`")
CHARS_TO_SPACE = ("\t", "\n", "\r")


def metaclip_spacing(text: str) -> str:
    spaced = f" {text} "
    for punct in PUNCTUATION_TO_WRAP:
        spaced = spaced.replace(punct, f" {punct} ")
    for char in CHARS_TO_SPACE:
        spaced = spaced.replace(char, " ")
    return spaced


def load_entries(path: str) -> list[str]:
    """A metadata file: a JSON list of strings (MetaCLIP's own 500k-entry file works as is), plain or
    compressed (.gz, .bz2, .xz: by its name)."""
    import fsspec

    with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as f:
        entries = json.load(f)
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ValueError(f"metadata {path} must be a JSON list of strings")
    if not entries:
        raise ValueError(f"metadata {path} is an empty list: no caption could match")
    blank = [i for i, e in enumerate(entries) if not e.strip()]
    if blank:  # matched as " " + "" + " ": every caption with a space or punctuation, the balance undone
        raise ValueError(f"metadata {path}: entry {blank[0]} is empty ({len(blank)} blank entries); remove them")
    return entries


class MetadataMatcher:
    """Built once per worker; `match(caption)` -> sorted ids of the entries it contains."""

    def __init__(self, entries: list[str]):
        import ahocorasick

        ids: dict[str, list[int]] = {}
        for entry_id, entry in enumerate(entries):
            ids.setdefault(f" {entry} ", []).append(entry_id)  # a repeated entry matches under every id
        automaton = ahocorasick.Automaton()
        for pattern, pattern_ids in ids.items():
            automaton.add_word(pattern, pattern_ids[0])
        automaton.make_automaton()
        self.automaton = automaton
        self.size = len(entries)
        # Repeated entries are rare; keeping them out of the automaton's values keeps the hot loop
        # a bare set comprehension over ints.
        self.repeats = {p[0]: p for p in ids.values() if len(p) > 1}

    def match(self, caption: str) -> list[int]:
        found = {value for _end, value in self.automaton.iter(metaclip_spacing(caption))}
        if self.repeats and not self.repeats.keys().isdisjoint(found):
            found.update(i for first in found & self.repeats.keys() for i in self.repeats[first])
        return sorted(found)
