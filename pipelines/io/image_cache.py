"""Fetched images kept while a run is in progress, so a run killed mid-way resumes its fetches.

Under the run's scratch directory (`_run/images/`, removed when the run finishes): one file per
URL, named by the URL's sha1, written atomically (a file that exists is whole). Only successful
fetches are kept; failures are retried on resume (a timeout may not repeat). The curate driver
keeps this directory when it resumes an interrupted run (pipelines/drivers/curate.py).
"""

from __future__ import annotations

import hashlib

import fsspec

from manifests.storage import atomic_open

CACHE_DIR = "_run/images"


class ImageCache:
    def __init__(self, root: str):
        self.base = f"{root.rstrip('/')}/{CACHE_DIR}"
        self.fs, self.path = fsspec.core.url_to_fs(self.base)

    def _name(self, url: str) -> str:
        digest = hashlib.sha1(url.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{digest[:2]}/{digest}"

    def get(self, url: str) -> bytes | None:
        try:
            with self.fs.open(f"{self.path}/{self._name(url)}", "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put(self, url: str, data: bytes) -> None:
        with atomic_open(f"{self.base}/{self._name(url)}") as out:
            out.write(data)
