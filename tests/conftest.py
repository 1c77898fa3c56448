"""Shared fixtures: generated images, a loaded heuristic filter, and a small sample pool."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from filters.heuristics import HeuristicFilter
from filters.sample import Sample
from pipelines.stages.heuristics import HeuristicsConfig
from pipelines.drivers.sample_data import write_pool

# Tests reach loopback only: albumentations (imported by img2dataset) checks PyPI for updates on
# import unless this is set; the CLI and download_guard set it too, this covers any other import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

POOL_RECORDS = 150


def make_image(width: int = 320, height: int = 240, fmt: str = "JPEG", colour=(200, 60, 60), exif=None) -> bytes:
    buffer = io.BytesIO()
    img = Image.new("RGB", (width, height), colour)
    options = {"exif": exif.tobytes()} if exif is not None else {}
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_sample(key: str = "k0", caption: str | None = "a large red circle on a blue background",
                image: bytes | None = None, meta: dict | None = None) -> Sample:
    return Sample(key=key, source="test.tar", image=make_image() if image is None else image, image_ext="jpg",
                  caption=caption, url=f"http://example.invalid/{key}.jpg", meta=meta or {})


@pytest.fixture(scope="session", autouse=True)
def private_system_tempdir(tmp_path_factory):
    """The system temp directory, for the code under test and the processes it starts, is this
    session's own folder: what libraries leave there (Beam keeps the scratch directory of a pipeline
    that is built but never run) stays out of /tmp, and parallel workers (make test runs two) never
    see each other's files. The same mechanism a run uses for itself (pipelines/io/scratch.py)."""
    from pipelines.io.scratch import private_tempdir

    with private_tempdir("system-tmp-", parent=str(tmp_path_factory.getbasetemp())) as scratch:
        yield Path(scratch)


@pytest.fixture(scope="session")
def default_filter() -> HeuristicFilter:
    return HeuristicFilter(HeuristicsConfig())


@pytest.fixture(scope="session")
def pool_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    write_pool(root, n=POOL_RECORDS, seed=7, per_shard=40)
    return root


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> dict:
    """A tiny open_clip model saved as config + checkpoint; the recipe's `model:` block for it."""
    from tests.tiny_clip import write_clip_checkpoint

    return write_clip_checkpoint(tmp_path_factory.mktemp("tiny_clip"), content_sensitive=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matmuls: thread start-up costs more than it saves on a busy machine (module-wide)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
