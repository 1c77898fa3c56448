"""fetch_images: documents' images through the guarded downloader, against a loopback server."""

from __future__ import annotations

import json

import pytest

from manifests.document_format import iter_documents
from manifests.recipe import parse_recipe
from pipelines.drivers.curate import curate
from tests.image_server import ImageServer
from tests.test_obelics_pipeline import write_warc

TEXT = ("The harbour was busy that morning, and the fishermen unloaded their boats while the gulls "
        "circled above the market.")


def page(base: str, images: list[str]) -> bytes:
    tags = "".join(f'<img src="{base}{path}" alt="picture">' for path in images)
    return f"<html><body><p>{TEXT}</p>{tags}<p>{TEXT} Later, it rained.</p></body></html>".encode()


def recipe(**fetch) -> dict:
    return {"name": "fetch", "input": {"kind": "document"},
            "stages": [{"fetch_images": {"per_host_interval": 0, "timeout": 1, "deadline": 5, **fetch}}]}


@pytest.fixture(scope="module")
def server():
    with ImageServer() as srv:
        yield srv


@pytest.fixture()
def crawl(tmp_path, server):
    pages = [
        ("https://site.example/a", page(server.base, ["/img/1.jpg", "/missing.jpg", "/robots.jpg", "/tiny.jpg",
                                                      "/img/2.jpg?w=600&h=200", "/page.html", "/bomb.png"])),
        ("https://site.example/b", page(server.base, ["/missing.jpg", "/tiny.jpg"])),
        ("https://site.example/c", page(server.base, ["/img/3.jpg?w=300&h=400", "/img/1.jpg"])),
    ]
    write_warc(tmp_path / "crawl.warc.gz", pages)
    return tmp_path / "crawl.warc.gz"


def test_images_are_fetched_checked_and_failures_counted(crawl, tmp_path):
    result = curate(parse_recipe(recipe(allow_private_networks=True)), str(crawl), str(tmp_path / "out"))
    stage = next(f for f in result.manifest.funnel if f.stage == "fetch_images")
    assert stage.edits == {"http_404": 2, "robots_opt_out": 1, "image_too_small": 2, "image_aspect_too_extreme": 1,
                           "image_undecodable": 1, "image_too_many_pixels": 1}
    assert stage.reasons == {"no_image_left": 1} and stage.kept == 2
    with open(tmp_path / "out" / result.manifest.shards[0].name, "rb") as f:
        docs = {d.url: d for d in iter_documents(f, "shard")}
    images = [n for n in docs["https://site.example/c"].nodes if hasattr(n, "image")]
    assert [(n.meta["original_width"], n.meta["original_height"], n.image_ext) for n in images] == \
        [(300, 400, "jpg"), (320, 240, "jpg")]
    assert docs["https://site.example/a"].images == [None, f"{images[1].url}", None]
    from manifests.verify import _image_members, verify_dataset

    assert verify_dataset(str(tmp_path / "out"), deep=True) == []  # --deep decodes each document image
    assert _image_members({"json": b"", "1.jpg": b"", "3.png": b"", "x.txt": b""}) == ["1.jpg", "3.png"]


def test_plain_webdataset_sees_image_members_by_position(crawl, tmp_path):
    import webdataset as wds

    # curate --allow-private-networks reaches fetch_images too (the recipe does not say it)
    result = curate(parse_recipe(recipe()), str(crawl), str(tmp_path / "out"), allow_private_networks=True)
    samples = list(wds.WebDataset(str(tmp_path / "out" / result.manifest.shards[0].name), shardshuffle=False))
    for sample in samples:
        layout = json.loads(sample["json"])
        members = {m["member"].split(".", 1)[1] for m in layout["metadata"] if m and "member" in m}
        assert members and members <= set(sample)
        for ext in members:
            position = int(ext.split(".")[0])
            assert layout["images"][position] is not None and sample[ext][:2] == b"\xff\xd8"


def test_private_addresses_are_refused_by_default(crawl, tmp_path, server):
    before = len(server.requests)
    result = curate(parse_recipe(recipe()), str(crawl), str(tmp_path / "out"))
    stage = next(f for f in result.manifest.funnel if f.stage == "fetch_images")
    assert set(stage.edits) == {"url_private_address"} and stage.reasons == {"no_image_left": 3}
    assert len(server.requests) == before  # refused before any request


def test_fetch_false_keeps_urls_only(crawl, tmp_path, server):
    before = len(server.requests)
    result = curate(parse_recipe(recipe(fetch=False)), str(crawl), str(tmp_path / "out"))
    assert result.manifest.counts.kept == 3 and len(server.requests) == before


def test_documents_to_pairs_feeds_the_pair_stages(crawl, tmp_path):
    spec = recipe(allow_private_networks=True)
    spec["stages"] += [{"documents_to_pairs": {"caption_from": ["alt", "paragraph"], "min_words": 3}},
                       {"heuristics": {"complexity": {"enabled": False}, "image": {"min_side": 100}}}]
    result = curate(parse_recipe(spec), str(crawl), str(tmp_path / "out"))
    m = result.manifest
    docs, pairs = m.counts_by_kind["document"], m.counts_by_kind["sample"]
    # 3 responses + 3 request records; a and c convert, b had no image left
    assert (docs.input, docs.converted, docs.rejected) == (6, 2, 4)
    assert pairs.input == 0 and pairs.produced == 3 == pairs.kept + pairs.rejected
    to_pairs = next(f for f in m.funnel if f.stage == "documents_to_pairs" and f.kind == "sample")
    assert to_pairs.produced == 3
    import webdataset as wds

    samples = list(wds.WebDataset(str(tmp_path / "out" / m.shards[0].name), shardshuffle=False))
    assert len(samples) == pairs.kept and all(s["jpg"][:2] == b"\xff\xd8" for s in samples)
    # "picture" (one word) is too short for a caption: the nearest paragraph is used instead
    assert {json.loads(s["json"])["caption_source"] for s in samples} == {"paragraph"}
    assert all(s["txt"].decode().startswith("The harbour was busy") for s in samples)


def test_an_interrupted_run_resumes_without_fetching_again(crawl, tmp_path, server):
    """A run killed after its fetches (no manifest, the image cache in _run/images) is started again
    without --overwrite: the images come from the cache, the server sees no request for them."""
    from pipelines.io.image_cache import CACHE_DIR

    out = tmp_path / "out"
    first = curate(parse_recipe(recipe(allow_private_networks=True, resume=True)), str(crawl), str(out))
    assert not (out / CACHE_DIR).exists()  # a finished run leaves no cache behind
    # What a kill after the fetch step leaves: fetched images in the cache, no manifest.
    (out / "manifest.json").unlink()
    from pipelines.io.image_cache import ImageCache

    cache = ImageCache(str(out))
    for url in ("/img/1.jpg", "/img/3.jpg?w=300&h=400"):
        with urllib_open(server.base + url) as response:
            cache.put(server.base + url, response.read())
    before = list(server.requests)
    again = curate(parse_recipe(recipe(allow_private_networks=True, resume=True)), str(crawl), str(out))
    fetched_again = server.requests[len(before):]
    assert "/img/1.jpg" not in fetched_again and "/img/3.jpg" not in fetched_again
    assert "/missing.jpg" in fetched_again  # failures are retried
    assert again.manifest.funnel == first.manifest.funnel


def urllib_open(url):
    import urllib.request

    return urllib.request.urlopen(url, timeout=5)  # noqa: S310  (the loopback test server)


def test_a_killed_run_resumes_its_fetches(tmp_path, server):
    """SIGKILL a real `vlcurate curate` while it fetches; started again (no --overwrite), it keeps the
    images it had fetched and asks the server only for the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.test_cli import ROOT

    pages = [(f"https://site.example/p{i}", page(server.base, [f"/img/{100 + 2 * i}.jpg", f"/img/{101 + 2 * i}.jpg"]))
             for i in range(10)]
    write_warc(tmp_path / "slow.warc.gz", pages)
    recipe_file = tmp_path / "fetch.yaml"
    recipe_file.write_text(json.dumps(recipe(threads=1, per_host_connections=1, batch_size=2)))  # YAML reads JSON
    out = tmp_path / "out"
    args = [sys.executable, "-m", "pipelines.cli", "curate", str(recipe_file), "-i", str(tmp_path / "slow.warc.gz"),
            "-o", str(out), "--allow-private-networks"]
    server.delay = 0.25  # 20 images, one at a time: about 5 s of fetching
    try:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        cache = out / "_run" / "images"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(cache.rglob("*"))) < 8:  # a few images (and their dirs)
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        server.delay = 0.0
    cached = [p for p in cache.rglob("*") if p.is_file() and ".tmp" not in p.name]
    assert 0 < len(cached) < 20 and not (out / "manifest.json").exists()
    before = len(server.requests)
    result = curate(parse_recipe(recipe(threads=4)), str(tmp_path / "slow.warc.gz"), str(out),
                    allow_private_networks=True)
    asked_again = [r for r in server.requests[before:] if r.startswith("/img/")]
    assert len(asked_again) == 20 - len(cached)
    stage = next(f for f in result.manifest.funnel if f.stage == "fetch_images")
    assert stage.kept == 10 and not stage.edits


def test_non_ascii_image_urls_are_sent_as_browsers_send_them():
    from pipelines.io.image_fetch import request_url, robots_disallowed

    assert request_url("https://exämple.com:8080/img/é.jpg?q=ü&a=b") == \
        "https://xn--exmple-cua.com:8080/img/%C3%A9.jpg?q=%C3%BC&a=b"
    assert request_url("http://a.example/x%20y.jpg?a=1") == "http://a.example/x%20y.jpg?a=1"
    # img2dataset's X-Robots-Tag rule: for every agent, or for ours by name
    directives = ("noai", "noindex")
    assert robots_disallowed(["noai"], "vlcurate", directives)
    assert robots_disallowed(["vlcurate: noindex, nofollow"], "vlcurate", directives)
    assert not robots_disallowed(["otherbot: noai"], "vlcurate", directives)
    assert not robots_disallowed(["nofollow"], "vlcurate", directives)


def test_recipe_images_fetch_false_keeps_urls_only(crawl, tmp_path, server):
    before = len(server.requests)
    spec = {**recipe(allow_private_networks=True), "images": {"fetch": False}}
    parsed = parse_recipe(spec)
    assert parsed.stages[0].config.fetch is False
    result = curate(parsed, str(crawl), str(tmp_path / "out"))
    assert result.manifest.counts.kept == 3 and len(server.requests) == before


def test_images_a_page_shows_small_are_dropped_as_obelics_does(tmp_path, server):
    """OBELICS' rendered-size rule: <img width/height> in [150, 20000]. A size in pixels is judged
    before fetching (the server never sees that request); a percentage, of the fetched size."""
    body = (f'<html><body><p>{TEXT}</p>'
            f'<img src="{server.base}/img/5.jpg" width="60" height="60px">'  # a 320x240 file shown as an icon
            f'<img src="{server.base}/img/6.jpg" width="40%">'  # 40% of 320 = 128 < 150
            f'<img src="{server.base}/img/7.jpg" width="100%" height="auto">'  # 320x240 as it is
            f'<img src="{server.base}/img/8.jpg" width="300.5" height="200">'
            f'<p>{TEXT} Later, it rained.</p></body></html>').encode()
    write_warc(tmp_path / "crawl.warc.gz", [("https://site.example/d", body)])
    before = len(server.requests)
    result = curate(parse_recipe(recipe(allow_private_networks=True)), str(tmp_path / "crawl.warc.gz"),
                    str(tmp_path / "out"))
    stage = next(f for f in result.manifest.funnel if f.stage == "fetch_images")
    assert stage.edits == {"image_rendered_too_small": 2} and stage.kept == 1
    assert "/img/5.jpg" not in server.requests[before:] and "/img/6.jpg" in server.requests[before:]
    with open(tmp_path / "out" / result.manifest.shards[0].name, "rb") as f:
        (doc,) = iter_documents(f, "shard")
    assert [n.meta for n in doc.nodes if hasattr(n, "image")] == [
        {"width_percent": 100, "original_width": 320, "original_height": 240, "format": "JPEG"},
        {"width": 300, "height": 200, "original_width": 320, "original_height": 240, "format": "JPEG"}]
    relaxed = curate(parse_recipe(recipe(allow_private_networks=True, min_rendered_side=None)),
                     str(tmp_path / "crawl.warc.gz"), str(tmp_path / "relaxed"))
    assert next(f for f in relaxed.manifest.funnel if f.stage == "fetch_images").edits == {}
