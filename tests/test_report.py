"""report.html: written with every run and listed in its manifest, self-contained (nothing fetched,
no script), built from the run's own accounting, untrusted captions escaped, rebuilt by
`vlcurate report`, and rendered by a real browser (headless Chromium) without console errors."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from manifests.manifest import read_manifest
from manifests.recipe import load_recipe, parse_recipe
from pipelines.drivers.curate import curate
from tests.conftest import make_image
from tests.test_cli import ROOT, vlcurate

HOSTILE = 'a red square <img src=x onerror="alert(1)"> &amp; <script>alert(2)</script> on white'


@pytest.fixture(scope="module")
def run(pool_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "curated"
    curate(load_recipe(ROOT / "manifests/recipes/quickstart.yaml"), f"{pool_dir}/shards/*.tar", str(out))
    return out


class Resources(HTMLParser):
    """Every tag and every URL-bearing attribute on the page."""

    def __init__(self):
        super().__init__()
        self.tags, self.urls = set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [value or "" for name, value in attrs if name in ("src", "href", "srcset", "data", "action")]


def test_every_run_writes_a_self_contained_report(run):
    manifest = read_manifest(run)
    page = (run / "report.html").read_bytes()
    assert manifest.report is not None and manifest.report.sha256 == hashlib.sha256(page).hexdigest()
    assert len(page) < 10_000_000
    found = Resources()
    found.feed(page.decode("utf-8"))
    assert not found.tags & {"script", "link", "iframe", "object", "embed"}
    assert found.urls and all(u.startswith(("data:image/", "#")) for u in found.urls)  # nothing fetched
    text = page.decode("utf-8")
    for row in manifest.funnel:  # the run's own accounting, stage by stage and reason by reason
        assert f"<td>{row.stage}</td><td class=\"n\">{row.input:,}</td>" in text
        for reason, n in row.reasons.items():
            assert f"<td>  {reason}</td><td class=\"n\"></td><td class=\"n\">{n:,}</td>" in text
    assert text.count('<div class="cell"><img src="data:image/jpeg') >= 24  # kept grid + rejected thumbnails
    assert "caption_words" in text and "language_not_allowed" in text and "min_words: 3" in text


def test_captions_are_escaped_and_scores_of_rejected_records_are_kept(tmp_path):
    import pyarrow.parquet as pq

    tar_path = tmp_path / "in" / "00000.tar"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w") as tar:
        for key, caption in (("hostile", HOSTILE), ("short", "a cat")):
            for ext, data in (("jpg", make_image(320, 240)), ("txt", caption.encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    recipe = parse_recipe({"name": "escape", "stages": [{"heuristics": {  # markup kept: the page must escape it
        "caption": {"clean_html": False}, "language": {"enabled": False}, "complexity": {"enabled": False}}}]})
    out = tmp_path / "out"
    curate(recipe, str(tar_path), str(out))
    text = (out / "report.html").read_text()
    assert "<script>alert" not in text and 'onerror="alert' not in text and "&lt;script&gt;alert(2)" in text
    rejected = pq.read_table(next((out / "rejected").glob("*.parquet"))).to_pylist()
    (short,) = [r for r in rejected if r["key"] == "short"]
    assert short["reason"] == "caption_too_few_words" and '"caption_words":2' in short["scores"]


def test_a_record_without_a_caption_gets_its_thumbnail_too(tmp_path):
    tar_path = tmp_path / "00000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in (("nocap.jpg", make_image(320, 240)), ("ok.jpg", make_image(320, 240, colour=(9, 9, 200))),
                           ("ok.txt", b"a large blue square on a white background")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    curate(parse_recipe({"name": "nocap", "stages": [{"heuristics": {}}]}), str(tar_path), str(tmp_path / "out"))
    text = (tmp_path / "out" / "report.html").read_text()
    section = text.split("caption_missing (1 of 1)</h3>", 1)[1].split("</h3>", 1)[0]  # its grid, to the next heading
    assert '<img src="data:image/jpeg' in section and "(no caption)" in section


def test_vlcurate_report_rebuilds_the_page_and_its_manifest_entry(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "report.html").unlink()
    result = vlcurate("report", str(copy))
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(copy)
    assert manifest.report.sha256 == hashlib.sha256((copy / "report.html").read_bytes()).hexdigest()
    assert (copy / "report.html").read_bytes() == (run / "report.html").read_bytes()  # same run, same page
    assert vlcurate("verify", str(copy)).returncode == 0
    # a missing file the page reads is named (it was reported as a missing manifest.json)
    parquet = sorted((copy / "metadata").glob("*.parquet"))[0]
    parquet.unlink()
    missing = vlcurate("report", str(copy))
    assert missing.returncode == 2 and f"a file the report reads is missing ({parquet})" in missing.stderr


def test_chromium_renders_the_report_without_console_errors(run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium; see README's tests section)")
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
         "--v=0", "--window-size=1200,2000", f"--screenshot={shot}", (run / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert shot.exists(), result.stderr[-2000:]
    assert console == []
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # text, tables and thumbnails, not a blank page
