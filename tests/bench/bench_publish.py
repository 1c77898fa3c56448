"""Benchmark (issue 16): `publish` to a loopback S3 server vs a plain parallel copy with s3fs, and
`verify` vs `sha256sum` on the same local files.

A curated run of the generated pool (vlcurate sample-data + quickstart) is published to moto's S3 server
on 127.0.0.1 through s3fs. Baseline: the same files copied with s3fs `put_file` on the same number of
threads, no checks. Publish does more: it verifies the local run first (hash of every file), checks what
is already there, and writes the manifest create-only. Goals: publish >= 0.9x the plain copy; verify's
MB/s against `sha256sum` of the same files.

    .venv/bin/python tests/bench/bench_publish.py [--n 6000] [--threads 8]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from manifests.manifest import read_manifest  # noqa: E402
from manifests.recipe import parse_recipe  # noqa: E402
from manifests.verify import verify_dataset  # noqa: E402
from pipelines.drivers.curate import curate  # noqa: E402
from pipelines.drivers.publish import publish  # noqa: E402
from pipelines.drivers.sample_data import write_pool  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    write_pool(work / "pool", n=args.n, seed=0, per_shard=500)
    recipe = parse_recipe({"name": "bench-publish", "stages": [{"heuristics": {"complexity": {"enabled": False}}}],
                           "output": {"samples_per_shard": 250}})
    run = str(work / "run")
    curate(recipe, str(work / "pool" / "shards" / "*.tar"), run)
    manifest = read_manifest(run)
    files = [e.name for e in manifest.file_entries()] + ["manifest.json"]
    total = sum((work / "run" / f).stat().st_size for f in files)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t",
                 region_name="us-east-1").create_bucket(Bucket="bench")
    options = {"endpoint_url": endpoint, "key": "t", "secret": "t", "client_kwargs": {"region_name": "us-east-1"}}
    fs = s3fs.S3FileSystem(**options)

    def plain(prefix: str) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda f: fs.put_file(str(work / "run" / f), f"bench/{prefix}/{f}"), files))
        return time.perf_counter() - started

    plain("warm")
    results = []
    for i in range(2):
        copy = plain(f"plain{i}")
        started = time.perf_counter()
        publish(run, f"s3://bench/published{i}", storage_options=options, threads=args.threads, progress=False)
        published = time.perf_counter() - started
        results.append((copy, published))
    started = time.perf_counter()
    assert verify_dataset(run) == []
    verify_s = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(["sha256sum", *files], cwd=work / "run", check=True, capture_output=True)
    sha_s = time.perf_counter() - started
    server.stop()
    print(f"publish bench: {len(files)} files, {total / 1e6:.1f} MB, {args.threads} threads, moto S3 on loopback")
    for copy, published in results:
        print(f"  plain s3fs put: {total / 1e6 / copy:6.1f} MB/s ({copy:.2f} s); publish: {total / 1e6 / published:6.1f} "
              f"MB/s ({published:.2f} s); publish / plain throughput {copy / published:.2f}x (goal >= 0.9x)")
    print(f"  verify (local run): {total / 1e6 / verify_s:6.1f} MB/s ({verify_s:.2f} s); sha256sum: "
          f"{total / 1e6 / sha_s:6.1f} MB/s ({sha_s:.2f} s); verify / sha256sum {sha_s / verify_s:.2f}x")


if __name__ == "__main__":
    main()
