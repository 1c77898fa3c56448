"""`vlcurate download` against a loopback HTTP server: every URL accounted for, resume, chaining."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.manifest import read_manifest
from manifests.verify import verify_dataset
from manifests.recipe import parse_recipe
from pipelines.drivers.curate import curate
from pipelines.drivers.download import DownloadError, download
from pipelines.io.url_lists import UrlListError
from tests.image_server import ImageServer

ROOT = Path(__file__).parents[1]
FAST = {"timeout": 1, "deadline": 3, "max_image_bytes": 200_000, "min_image_size": 100, "samples_per_shard": 10,
        "processes": 1, "threads": 4}


def recipe(**download) -> object:
    return parse_recipe({"name": "t", "download": {**FAST, **download}})


def write_urls(path: Path, urls: list[str], captions: list[str] | None = None) -> str:
    captions = captions or [f"a photo of object number {i}" for i in range(len(urls))]
    pq.write_table(pa.table({"url": urls, "caption": captions}), path)
    return str(path)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def reasons_by_url(root: Path) -> dict[str, str]:
    rows = [r for f in read_manifest(str(root)).rejected for r in pq.read_table(root / f.name).to_pylist()]
    return {r["url"]: r["reason"] for r in rows}


def test_every_url_ends_kept_or_with_its_reason(tmp_path):
    with ImageServer() as server:
        b = server.base
        expected = {
            f"{b}/missing.jpg": "http_404",
            f"http://127.0.0.1:{closed_port()}/x.jpg": "connection_refused",
            f"{b}/slow.jpg": "timeout",
            f"{b}/page.html": "not_an_image",
            f"{b}/huge.jpg": "response_too_large",
            f"{b}/stream.jpg": "response_too_large",
            f"{b}/ftp-redirect.jpg": "redirect_scheme_not_allowed",
            f"{b}/file-redirect.jpg": "redirect_scheme_not_allowed",
            f"{b}/loop.jpg": "redirect_loop",
            f"{b}/bomb.png": "image_too_many_pixels",
            f"{b}/drip.jpg": "timeout",
            f"{b}/robots.jpg": "robots_opt_out",
            f"{b}/tiny.jpg": "image_too_small",
            "ftp://example.com/a.jpg": "url_scheme_not_allowed",
            "file:///etc/passwd": "url_scheme_not_allowed",
            "data:image/png;base64,iVBORw0KGgo=": "url_scheme_not_allowed",
            "javascript:alert(1)": "url_scheme_not_allowed",
            "": "url_empty",
            "http://[bad/": "url_malformed",
        }
        good = [f"{b}/img/{i}.jpg" for i in range(12)] + [f"{b}/redirect.jpg"]
        urls = good + list(expected)
        result = download(recipe(), write_urls(tmp_path / "urls.parquet", urls), str(tmp_path / "dl"),
                          allow_private_networks=True)
        requested = sorted(server.requests)
    m = result.manifest
    assert (m.counts.input, m.counts.kept, m.counts.rejected) == (len(urls), len(good), len(expected))
    assert reasons_by_url(tmp_path / "dl") == expected
    assert m.funnel[0].reasons["url_scheme_not_allowed"] == 4 and m.funnel[0].kept == len(good)
    # URLs refused before fetching never reached the server; the redirect was followed once
    fetched = [u.removeprefix(b) for u in urls if u.startswith(b)]
    loops = requested.count("/loop.jpg")
    assert 1 < loops <= 11  # urllib follows a redirect loop a bounded number of times, then stops
    assert [r for r in requested if r != "/loop.jpg"] == sorted(u for u in fetched + ["/img/77.jpg"] if u != "/loop.jpg")
    assert verify_dataset(str(tmp_path / "dl")) == []
    assert sum(s.samples for s in m.shards) == len(good) and len(m.shards) == 3  # 29 safe URLs, 10 per shard


def test_private_addresses_are_refused_without_a_request(tmp_path):
    with ImageServer() as server:
        port = server.server_address[1]
        urls = [f"{server.base}/img/1.jpg", f"http://localhost:{port}/img/2.jpg", f"http://2130706433:{port}/x.jpg",
                f"http://[::1]:{port}/img/3.jpg", "file:///etc/hostname"]
        result = download(recipe(), write_urls(tmp_path / "u.parquet", urls), str(tmp_path / "dl"))
        assert server.requests == []
    assert result.manifest.funnel[0].reasons == {"url_private_address": 4, "url_scheme_not_allowed": 1}
    assert result.manifest.counts.kept == 0 and result.manifest.shards == []


def test_interrupted_download_resumes_without_refetching_finished_shards(tmp_path):
    urls_path = tmp_path / "urls.parquet"
    out = tmp_path / "dl"
    with ImageServer() as server:
        server.delay = 0.15  # 10 URLs per shard, 2 threads: about 0.75 s per shard
        urls = [f"{server.base}/img/{i}.jpg" for i in range(50)]
        write_urls(urls_path, urls)
        script = (
            "from manifests.recipe import parse_recipe\n"
            "from pipelines.drivers.download import download\n"
            "if __name__ == '__main__':\n"
            f"    r = parse_recipe({{'name': 't', 'download': {{**{FAST!r}, 'threads': 2}}}})\n"
            f"    download(r, {str(urls_path)!r}, {str(out)!r}, allow_private_networks=True)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list((out / "shards").glob("*_stats.json"))) < 2:
            assert proc.poll() is None, "the download finished before it could be interrupted"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the download and img2dataset's worker processes
        proc.wait()
        finished = sorted(p.name.removesuffix("_stats.json") for p in (out / "shards").glob("*_stats.json"))
        assert 2 <= len(finished) < 5 and not (out / "manifest.json").exists()
        first_pass = list(server.requests)
        server.requests.clear()
        server.delay = 0.0
        result = download(recipe(threads=2), str(urls_path), str(out), allow_private_networks=True)
        second_pass = list(server.requests)
    done_urls = {f"/img/{int(stem) * 10 + i}.jpg" for stem in finished for i in range(10)}
    assert done_urls <= set(first_pass)
    assert not done_urls & set(second_pass), "finished shards were fetched again"
    assert len(second_pass) == 50 - len(done_urls)
    m = result.manifest
    assert (m.counts.input, m.counts.kept, m.counts.rejected) == (50, 50, 0) and m.inputs["resumed"]
    assert verify_dataset(str(out)) == []


def test_finished_download_is_not_redone_and_other_lists_are_refused(tmp_path):
    with ImageServer() as server:
        urls = write_urls(tmp_path / "u.parquet", [f"{server.base}/img/{i}.jpg" for i in range(3)])
        download(recipe(), urls, str(tmp_path / "dl"), allow_private_networks=True)
        with pytest.raises(DownloadError, match="finished download; pass --overwrite"):
            download(recipe(), urls, str(tmp_path / "dl"), allow_private_networks=True)
        other = write_urls(tmp_path / "v.parquet", [f"{server.base}/img/{i}.jpg" for i in range(4)])
        # a resumed curate reuses a finished raw/ download, but only of the same list
        reused = download(recipe(), urls, str(tmp_path / "dl"), reuse_complete=True)
        assert reused.manifest.counts.kept == 3
        with pytest.raises(DownloadError, match=r"finished download of .*u\.parquet, not of .*v\.parquet"):
            download(recipe(), other, str(tmp_path / "dl"), reuse_complete=True)
        with pytest.raises(DownloadError, match=r"finished download of 3 URLs of .*u\.parquet, this run reads 2"):
            download(recipe(), urls, str(tmp_path / "dl"), reuse_complete=True, limit=2)
        (tmp_path / "dl" / "manifest.json").unlink()  # as if interrupted at the very end
        with pytest.raises(DownloadError, match="different URL list"):
            download(recipe(), other, str(tmp_path / "dl"), allow_private_networks=True)
        again = download(recipe(), urls, str(tmp_path / "dl"), overwrite=True, allow_private_networks=True)
    assert again.manifest.counts.kept == 3


def test_curate_on_a_url_list_downloads_then_curates(tmp_path):
    captions = ["a large red circle on a blue background", "a small green square next to a yellow triangle",
                "red", "ein roter Kreis auf einem blauen Hintergrund", "a purple triangle on a white background"]
    with ImageServer() as server:
        urls = [f"{server.base}/img/{i}.jpg?w=320&h=240" for i in range(5)] + [f"{server.base}/missing.jpg", "ftp://x/y"]
        url_list = write_urls(tmp_path / "u.parquet", urls, captions + ["a missing image of a cat", "an ftp image"])
        r = parse_recipe({"name": "chain", "download": {**FAST, "image_size": 256, "resize_mode": "no"},
                          "stages": [{"heuristics": {}}], "output": {"samples_per_shard": 2}})
        # img2dataset imports wandb, which makes two temporary directories at import. This process
        # removes its own at exit; img2dataset's worker processes never do (os._exit), so the download
        # runs with a temp directory of its own. Imported first, so only the workers' count here.
        import pipelines.io.download_guard  # noqa: F401

        before = set(os.listdir(tempfile.gettempdir()))
        result = curate(r, url_list, str(tmp_path / "out"), allow_private_networks=True)
    assert set(os.listdir(tempfile.gettempdir())) - before == set()
    m = result.manifest
    assert [f.stage for f in m.funnel] == ["download", "read", "heuristics", "sink"]
    assert (m.counts.input, m.counts.kept, m.counts.rejected) == (7, 3, 4)
    assert m.funnel[0].reasons == {"http_404": 1, "url_scheme_not_allowed": 1}
    assert m.funnel[2].reasons == {"caption_too_few_words": 1, "language_not_allowed": 1}
    assert any(f.name.startswith("raw/rejected/download-") for f in m.rejected)
    assert verify_dataset(str(tmp_path / "out")) == [] and verify_dataset(str(tmp_path / "out/raw")) == []


def test_progress_is_one_bar_over_the_list_and_limit_takes_the_first_urls(tmp_path, capfd):
    """With progress on, img2dataset's per-shard lines go to a log file and one bar counts every URL
    tried; --limit fetches only the list's first N URLs."""
    with ImageServer() as server:
        urls = write_urls(tmp_path / "u.parquet", [f"{server.base}/img/{i}.jpg" for i in range(40)])
        result = download(recipe(), urls, str(tmp_path / "dl"), allow_private_networks=True, progress=True, limit=25)
        fetched = {p for p in server.requests if p.startswith("/img/")}
    captured = capfd.readouterr()
    assert result.manifest.counts.input == 25 and result.manifest.counts.kept == 25
    assert fetched == {f"/img/{i}.jpg" for i in range(25)}
    assert "download" in captured.err and "25/25" in captured.err and "25 images kept" in captured.err
    assert "success:" not in captured.out + captured.err  # img2dataset's own per-shard lines: in its log only


@pytest.mark.parametrize("package", ["ray", "pyspark"])
def test_a_distributor_whose_package_is_missing_stops_before_anything_is_written(tmp_path, monkeypatch, package):
    """img2dataset never names the missing package: with ray it fetched nothing and returned, with
    pyspark it died mid-run. A None entry in sys.modules is how Python itself blocks an import, so
    the package is missing here whatever is installed."""
    monkeypatch.setitem(sys.modules, package, None)
    urls = write_urls(tmp_path / "u.parquet", [f"http://127.0.0.1:{closed_port()}/a.jpg"])
    message = (f"download.distributor: {package} needs the '{package}' package \\(pip install {package}\\), "
               "or use distributor: multiprocessing")
    with pytest.raises(DownloadError, match=message):
        download(recipe(distributor=package), urls, str(tmp_path / "dl"), allow_private_networks=True)
    assert not (tmp_path / "dl").exists()


def test_a_download_in_which_img2dataset_finished_no_shard_is_not_recorded_as_finished(tmp_path):
    """A ray that is installed but broken (its import fails inside img2dataset, which then silently
    distributes nothing) is one way img2dataset returns without finishing any shard. The run stops
    with one line and no manifest, so a rerun resumes instead of being refused."""
    fake = tmp_path / "site"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ModuleNotFoundError('a broken ray install', name='ray')\n")
    out = tmp_path / "dl"
    with ImageServer() as server:
        urls = write_urls(tmp_path / "u.parquet", [f"{server.base}/img/{i}.jpg" for i in range(3)])
        (tmp_path / "ray.yaml").write_text(json.dumps({"name": "t", "download": {**FAST, "distributor": "ray"}}))
        failed = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "download", str(tmp_path / "ray.yaml"), "-i", urls, "-o", str(out),
             "--allow-private-networks", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=120,
            env={**os.environ, "PYTHONPATH": str(fake), "NO_ALBUMENTATIONS_UPDATE": "1"})
        assert failed.returncode == 2, failed.stderr
        assert "error: img2dataset finished none of the 1 shard(s)" in failed.stderr
        assert "Traceback" not in failed.stderr and not (out / "manifest.json").exists()
        again = download(recipe(), urls, str(out), allow_private_networks=True)
    assert again.manifest.inputs["resumed"] and again.manifest.counts.kept == 3


def test_a_missing_url_list_is_one_line_and_writes_nothing(tmp_path):
    missing = str(tmp_path / "nourls.parquet")
    with pytest.raises(UrlListError, match=f"the URL list {missing} does not exist"):
        download(recipe(), missing, str(tmp_path / "dl"))
    assert not (tmp_path / "dl").exists()
    quickstart = str(ROOT / "manifests/recipes/download_quickstart.yaml")
    cli = subprocess.run([sys.executable, "-m", "pipelines.cli", "download", quickstart, "-i", missing, "-o",
                          str(tmp_path / "out"), "-q"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert cli.returncode == 2 and cli.stderr.strip() == f"error: the URL list {missing} does not exist"
    assert not (tmp_path / "out").exists()
    with pytest.raises(UrlListError, match="does not exist"):
        curate(parse_recipe({"name": "t", "download": FAST}), missing, str(tmp_path / "curated"))
    assert not (tmp_path / "curated").exists()


def test_refused_private_addresses_name_the_flag_that_allows_them(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="vlcurate")
    urls = write_urls(tmp_path / "u.parquet", ["http://127.0.0.1:9/a.jpg", "http://localhost:9/b.jpg",
                                               "ftp://localhost/c.jpg"])
    result = download(recipe(), urls, str(tmp_path / "dl"))
    assert result.manifest.funnel[0].reasons == {"url_private_address": 2, "url_scheme_not_allowed": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 URL(s)" in warnings[0] and "--allow-private-networks" in warnings[0]


def test_quiet_keeps_img2dataset_chatter_out_of_the_terminal(tmp_path, capfd):
    """--quiet sets vlcurate's log to WARNING: img2dataset's per-shard lines then go to its log file only."""
    logger = logging.getLogger("vlcurate")
    before = logger.level
    with ImageServer() as server:
        urls = write_urls(tmp_path / "u.parquet", [f"{server.base}/img/{i}.jpg" for i in range(4)])
        try:
            logger.setLevel(logging.WARNING)
            quiet = download(recipe(), urls, str(tmp_path / "quiet"), allow_private_networks=True)
            hushed = capfd.readouterr()
            logger.setLevel(logging.INFO)
            download(recipe(), urls, str(tmp_path / "loud"), allow_private_networks=True)
            loud = capfd.readouterr()
        finally:
            logger.setLevel(before)
    assert quiet.manifest.counts.kept == 4
    assert "success:" not in hushed.out + hushed.err and "success:" in loud.out + loud.err


def test_a_shard_img2dataset_gave_up_on_stops_the_run_so_the_rerun_resumes(tmp_path):
    """A file-size limit (as a full disk would) fails the one shard whose tar outgrows it: img2dataset
    finishes the others and returns normally. That is infrastructure, not a verdict on the URLs: one
    line, no manifest, and the same command afterwards fetches only that shard."""
    import resource

    out = tmp_path / "dl"
    with ImageServer() as server:
        urls = write_urls(tmp_path / "u.parquet", [f"{server.base}/img/{i}.jpg" for i in range(4)] +
                          [f"{server.base}/huge.jpg", f"{server.base}/img/9.jpg"])
        spec = {"name": "t", "download": {**FAST, "samples_per_shard": 2, "max_image_bytes": 8_000_000,
                                          "image_size": 1200}}
        (tmp_path / "r.yaml").write_text(json.dumps(spec))
        limited = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "download", str(tmp_path / "r.yaml"), "-i", urls, "-o", str(out),
             "--allow-private-networks", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=180,
            env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONDONTWRITEBYTECODE": "1"},
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, resource.RLIM_INFINITY)))
        assert limited.returncode == 2, limited.stderr
        assert "error: img2dataset finished 2 of 3 shard(s)" in limited.stderr and "2 URL(s) not fetched" in limited.stderr
        assert "Traceback" not in limited.stderr.splitlines()[-1] and not (out / "manifest.json").exists()
        before = len(server.requests)
        again = download(parse_recipe(spec), urls, str(out), allow_private_networks=True)
        assert sorted(server.requests[before:]) == ["/huge.jpg", "/img/9.jpg"]
    assert again.manifest.inputs["resumed"] and again.manifest.counts.kept == 6
    assert again.manifest.funnel[0].reasons == {}


def test_an_output_named_with_brackets_is_taken_literally(tmp_path):
    """'dl [a]' is a folder name, not the character class [a]: the download's own globs found no
    finished shard there and failed after fetching everything."""
    from manifests.verify import verify_dataset

    out = tmp_path / "dl [a]"
    with ImageServer() as server:
        urls = write_urls(tmp_path / "u.parquet", [f"{server.base}/img/{i}.jpg" for i in range(3)])
        result = download(recipe(samples_per_shard=2), urls, str(out), allow_private_networks=True)
    assert result.manifest.counts.kept == 3 and len(result.manifest.shards) == 2
    assert verify_dataset(str(out)) == []
