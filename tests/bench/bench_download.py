"""Benchmark (issue 3): `vlcurate download` vs a direct img2dataset call, same settings, same process.

2,000 generated JPEGs served on loopback (a server in its own process) under the 10,000 real
captions of ../shared/data/captions/web_alt_text_10k.parquet, their URLs rewritten to the local
server (row i fetches image i % 2,000). Both runs: webdataset output, 2 processes x 32 threads,
resize to 256 (border), 1,000 URLs per shard. vlcurate adds its URL checks, the guarded opener,
the accounting pass and the manifest (sha256 of every file). Interleaved runs, best of each.
Goal: vlcurate >= 0.95x img2dataset's images/s.

    .venv/bin/python tests/bench/bench_download.py
"""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tests.bench.common import generated_image, real_captions_or_skip  # noqa: E402

N_IMAGES = 2000
REPEATS = 3
SETTINGS = {"processes_count": 2, "thread_count": 32, "image_size": 256, "resize_mode": "border",
            "number_sample_per_shard": 1000, "timeout": 10, "retries": 0}


def _serve(port_queue) -> None:
    images = [generated_image(i) for i in range(N_IMAGES)]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            i = int(self.path.rsplit("/", 1)[-1].split(".")[0])
            body = images[i]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def run_img2dataset(url_list: str, out: str) -> None:
    from img2dataset import download

    download(url_list=url_list, input_format="parquet", url_col="url", caption_col="caption",
             output_folder=out, output_format="webdataset", enable_wandb=False, **SETTINGS)


def run_vlcurate(url_list: str, out: str) -> dict:
    from manifests.recipe import parse_recipe
    from pipelines.drivers.download import download

    recipe = parse_recipe({"name": "bench", "download": {
        "processes": SETTINGS["processes_count"], "threads": SETTINGS["thread_count"],
        "image_size": SETTINGS["image_size"], "resize_mode": SETTINGS["resize_mode"],
        "resize_only_if_bigger": False, "samples_per_shard": SETTINGS["number_sample_per_shard"],
        "timeout": SETTINGS["timeout"], "retries": SETTINGS["retries"]}})
    manifest = download(recipe, url_list, out, allow_private_networks=True).manifest
    return {"kept": manifest.counts.kept, **manifest.timings_s}


def main() -> None:
    captions = real_captions_or_skip()
    ctx = multiprocessing.get_context("fork")
    ports = ctx.Queue()
    server = ctx.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    port = ports.get(timeout=120)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url_list = f"{tmp}/urls.parquet"
            urls = [f"http://127.0.0.1:{port}/img/{i % N_IMAGES}.jpg" for i in range(len(captions))]
            pq.write_table(pa.table({"url": urls, "caption": [c for _u, c in captions]}), url_list)
            times: dict[str, list[float]] = {"img2dataset": [], "vlcurate": []}
            phases: list[dict] = []
            for rep in range(REPEATS):
                for name in ("img2dataset", "vlcurate"):
                    out = f"{tmp}/{name}{rep}"
                    started = time.perf_counter()
                    if name == "img2dataset":
                        run_img2dataset(url_list, out)
                    else:
                        phases.append(run_vlcurate(url_list, out))
                    times[name].append(time.perf_counter() - started)
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        server.terminate()
    n = len(captions)
    best = {k: min(v) for k, v in times.items()}
    print(f"\nURLs: {n:,} (images served: {N_IMAGES:,}), vlcurate kept {phases[-1]['kept']:,}")
    for name, seconds in best.items():
        print(f"{name:<12}: {seconds:6.2f} s  {n / seconds:7.0f} images/s   runs {[round(t, 2) for t in times[name]]}")
    for p in phases:
        print(f"  vlcurate phases (s): url checks {p['url_checks']}, img2dataset {p['img2dataset']}, "
              f"accounting {p['accounting']}, total {p['total']}")
    print(f"ratio of medians: {sorted(times['img2dataset'])[len(times['img2dataset']) // 2] / sorted(times['vlcurate'])[len(times['vlcurate']) // 2]:.2f}x")
    print(f"ratio vlcurate/img2dataset images/s: {best['img2dataset'] / best['vlcurate']:.2f}x  (goal >= 0.95x)")


if __name__ == "__main__":
    main()
