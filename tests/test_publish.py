"""`vlcurate publish` and remote `verify` against a real S3 server (moto's, on loopback) through s3fs:
publish, verify, a second publish refused, --replace, resume after an interrupted publish, a missing
bucket and bad credentials as one line each, a file corrupted on the server found by verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from manifests.recipe import load_recipe
from manifests.verify import verify_dataset
from pipelines.drivers.curate import curate
from pipelines.drivers.publish import PublishError, publish
from tests.test_cli import ROOT, vlcurate

BUCKET = "vlcurate-test"


@pytest.fixture(scope="module")
def s3():
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
               "client_kwargs": {"region_name": "us-east-1"}}
    yield options
    server.stop()


@pytest.fixture(scope="module")
def run(pool_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "curated"
    curate(load_recipe(ROOT / "manifests/recipes/quickstart.yaml"), f"{pool_dir}/shards/*.tar", str(out))
    return str(out)


def remote_fs(options):
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    fs.invalidate_cache()
    return fs


def test_publish_verify_refuse_replace(run, s3):
    dest = f"s3://{BUCKET}/sets/first"
    result = publish(run, dest, storage_options=s3, progress=False)
    assert result.uploaded and not result.skipped and result.manifest_url == f"{dest}/manifest.json"
    assert verify_dataset(dest) == []
    with pytest.raises(PublishError, match="already holds a published set .* --replace"):
        publish(run, dest, storage_options=s3, progress=False)
    again = publish(run, dest, replace=True, storage_options=s3, progress=False)
    assert again.uploaded == [] and again.replaced.startswith("_versions/")
    assert verify_dataset(dest) == [] and verify_dataset(f"{dest}/{again.replaced}") == []


@pytest.fixture(scope="module")
def smaller_run(pool_dir, tmp_path_factory):
    """Another version of `run`: fewer records, so fewer shards, and different files under the same names."""
    out = tmp_path_factory.mktemp("run") / "smaller"
    curate(load_recipe(ROOT / "manifests/recipes/quickstart.yaml"), f"{pool_dir}/shards/*.tar", str(out), limit=60)
    return str(out)


@pytest.mark.parametrize("store", ["s3", "local"])
def test_replace_keeps_the_old_version_whole_and_leaves_no_stale_file(run, smaller_run, s3, tmp_path, store):
    from manifests.manifest import read_manifest

    dest, options = (f"s3://{BUCKET}/sets/replaced", s3) if store == "s3" else (str(tmp_path / "published"), {})
    publish(run, dest, storage_options=options, progress=False)
    old = read_manifest(dest)
    new = publish(smaller_run, dest, replace=True, storage_options=options, progress=False)
    assert read_manifest(dest).created_utc == read_manifest(smaller_run).created_utc
    assert verify_dataset(dest) == []  # the old version's extra shards are gone from the top level
    kept = f"{dest}/{new.replaced}"
    assert read_manifest(kept).created_utc == old.created_utc and verify_dataset(kept) == []
    assert len(read_manifest(kept).shards) > len(read_manifest(dest).shards)


def test_a_replace_stopped_mid_upload_resumes_and_leaves_no_stale_file(run, smaller_run, tmp_path, monkeypatch):
    import pipelines.drivers.publish as publishing

    dest = str(tmp_path / "published")
    publish(run, dest, progress=False)

    def network_down(*args):
        raise OSError("network down")

    with monkeypatch.context() as patch:  # the upload fails after the old version was kept and unlisted
        patch.setattr(publishing, "_copy", network_down)
        with pytest.raises(PublishError, match="network down"):
            publish(smaller_run, dest, replace=True, progress=False)
    assert not (tmp_path / "published" / "manifest.json").exists()  # no set rather than a mixed one
    again = publish(smaller_run, dest, replace=True, progress=False)  # the same command again
    assert again.replaced is None and verify_dataset(dest) == []
    (kept,) = (tmp_path / "published" / "_versions").iterdir()
    assert verify_dataset(str(kept)) == []


def test_a_replace_from_a_changed_run_writes_nothing(run, smaller_run, s3, tmp_path):
    import shutil
    from pathlib import Path

    dest = f"s3://{BUCKET}/sets/untouched"
    publish(run, dest, storage_options=s3, progress=False)
    before = {p: remote_fs(s3).info(p)["ETag"] for p in remote_fs(s3).find(f"{BUCKET}/sets/untouched")}
    changed = tmp_path / "changed"
    shutil.copytree(smaller_run, changed)
    shard = sorted((changed / "shards").glob("*.tar"))[-1]
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF
    Path(shard).write_bytes(bytes(data))
    with pytest.raises(PublishError, match=f"{shard.name} does not match .* nothing was written"):
        publish(str(changed), dest, replace=True, storage_options=s3, progress=False)
    after = {p: remote_fs(s3).info(p)["ETag"] for p in remote_fs(s3).find(f"{BUCKET}/sets/untouched")}
    assert after == before and verify_dataset(dest) == []


def test_an_interrupted_publish_resumes_with_what_is_missing(run, s3):
    dest = f"s3://{BUCKET}/sets/resumed"
    first = publish(run, dest, storage_options=s3, progress=False)
    fs = remote_fs(s3)
    base = f"{BUCKET}/sets/resumed"
    # what a publish killed before its end leaves: no manifest, one file missing, one cut short
    shard, other = sorted(n for n in first.uploaded if n.endswith(".tar"))[:2]
    fs.rm(f"{base}/manifest.json")
    fs.rm(f"{base}/{shard}")
    fs.pipe(f"{base}/{other}", fs.cat(f"{base}/{other}")[:1000])
    second = publish(run, dest, storage_options=s3, progress=False)
    assert sorted(second.uploaded) == sorted([shard, other])
    assert len(second.skipped) == len(first.uploaded) - 2 and verify_dataset(dest) == []


def test_verify_finds_a_file_corrupted_on_the_server(run, s3):
    dest = f"s3://{BUCKET}/sets/corrupted"
    result = publish(run, dest, storage_options=s3, progress=False)
    fs = remote_fs(s3)
    name = next(n for n in result.uploaded if n.endswith(".parquet"))
    data = bytearray(fs.cat(f"{BUCKET}/sets/corrupted/{name}"))
    data[len(data) // 2] ^= 0xFF
    fs.pipe(f"{BUCKET}/sets/corrupted/{name}", bytes(data))
    fs.pipe(f"{BUCKET}/sets/corrupted/extra.txt", b"not ours")
    problems = verify_dataset(dest)
    assert f"{name}: sha256 differs from the manifest" in problems
    assert any(p.startswith("extra.txt: not listed") for p in problems)


def test_missing_bucket_and_bad_credentials_are_one_line_each(run, s3, monkeypatch):
    with pytest.raises(PublishError, match="the bucket .no-such-bucket-here. does not exist"):
        publish(run, "s3://no-such-bucket-here/set", storage_options=s3, progress=False)
    import moto.settings

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server now checks keys
    with pytest.raises(PublishError, match="access refused: check the credentials") as err:
        publish(run, f"s3://{BUCKET}/sets/denied", storage_options={**s3, "key": "wrong", "secret": "nope"},
                progress=False)
    assert "nope" not in str(err.value) and "\n" not in str(err.value)


def test_cli_publish_and_remote_verify(run, s3):
    endpoint = s3["endpoint_url"]
    options = ["-S", f"endpoint_url={endpoint}", "-S", "key=testing", "-S", "secret=testing",
               "-S", 'client_kwargs={"region_name": "us-east-1"}']
    published = vlcurate("publish", run, f"s3://{BUCKET}/sets/cli", *options)
    assert published.returncode == 0, published.stderr
    assert "manifest: s3://" in published.stdout and "testing" not in published.stdout + published.stderr
    verified = vlcurate("verify", f"s3://{BUCKET}/sets/cli", *options)
    assert verified.returncode == 0 and verified.stdout.startswith("ok:"), verified.stderr
    refused = vlcurate("publish", run, f"s3://{BUCKET}/sets/cli", *options)
    assert refused.returncode != 0 and "--replace" in refused.stderr and "Traceback" not in refused.stderr
    # the manifest's own path (or a trailing slash) names the same set
    assert vlcurate("verify", f"s3://{BUCKET}/sets/cli/manifest.json", *options).returncode == 0
    assert vlcurate("verify", f"{run}/").stdout.startswith(f"ok: ") and vlcurate("verify", f"{run}/").stdout.endswith(
        f"match {run}/manifest.json\n")
    # a published set published again from the bucket: -S reaches the source store too
    again = vlcurate("publish", f"s3://{BUCKET}/sets/cli", f"s3://{BUCKET}/sets/cli-copy", *options)
    assert again.returncode == 0, again.stderr
    typo = vlcurate("verify", f"s3://{BUCKET}/sets/cli", *options, "-S", f"endpont_url={endpoint}")
    assert typo.returncode == 2 and "'endpont_url' is not an option of this store" in typo.stderr


def test_every_run_writes_a_dataset_card_hf_reads(run):
    from pathlib import Path

    from huggingface_hub import DatasetCard

    from manifests.manifest import read_manifest

    manifest = read_manifest(run)
    assert manifest.card is not None and manifest.card.name == "README.md"
    card = DatasetCard.load(Path(run) / "README.md")
    data = card.data.to_dict()
    assert data["configs"][0]["data_files"][0]["path"] == "shards/*.tar" and data["license"] == "other"
    assert f"{manifest.counts.kept:,} samples kept of {manifest.counts.input:,} read" in card.text
    assert "| heuristics | sample |" in card.text and "```yaml" in card.text


def test_curate_writes_straight_to_s3(pool_dir, s3):
    """--output s3://...: shards and rejections through fsspec (temp names, then copy: S3 has no atomic
    rename, so the manifest written last is what marks the set complete), the lock create-only."""
    from manifests.storage import use_storage_options

    use_storage_options("s3://", s3)
    out = f"s3://{BUCKET}/runs/direct"
    result = curate(load_recipe(ROOT / "manifests/recipes/quickstart.yaml"), f"{pool_dir}/shards/*.tar", out)
    assert result.manifest_url == f"{out}/manifest.json" and verify_dataset(out) == []
    again = curate(load_recipe(ROOT / "manifests/recipes/quickstart.yaml"), f"{pool_dir}/shards/*.tar", out,
                   overwrite=True)
    assert again.manifest.counts == result.manifest.counts and verify_dataset(out) == []
    assert not remote_fs(s3).exists(f"{BUCKET}/runs/direct/.vlcurate.lock")


def test_a_local_file_changed_since_the_run_publishes_no_manifest(run, s3, tmp_path):
    import shutil
    from pathlib import Path

    copy = tmp_path / "changed"
    shutil.copytree(run, copy)
    rejected = sorted((copy / "rejected").glob("*.parquet"))[0]
    data = bytearray(rejected.read_bytes())
    data[-100] ^= 0xFF
    rejected.write_bytes(bytes(data))
    with pytest.raises(PublishError, match=f"{rejected.name} does not match its manifest's sha256"):
        publish(str(copy), f"s3://{BUCKET}/sets/changed", storage_options=s3, progress=False)
    assert not remote_fs(s3).exists(f"{BUCKET}/sets/changed/manifest.json")
    assert Path(run, "manifest.json").exists()


# ---------------------------------------------------------------- Google Cloud Storage (an emulator on loopback)
@pytest.fixture(scope="module")
def gcs(monkeypatch_module):
    pytest.importorskip("gcp_storage_emulator")
    from gcp_storage_emulator.server import create_server

    monkeypatch_module.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # the emulator has no HNS API
    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="vlcurate-gcs")
    server.start()
    port = server._api._httpd.server_address[1]
    yield {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "project": "test"}
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_publish_and_verify_on_gcs(run, gcs):
    import gcsfs

    dest = "gs://vlcurate-gcs/sets/first"
    result = publish(run, dest, storage_options=gcs, progress=False)
    assert result.uploaded and verify_dataset(dest) == []
    # The emulator ignores ifGenerationMatch=0 (gcsfs sends it for the create-only manifest), so the
    # refusal seen here is publish's own check; the race-free create-only put is tested on S3 above.
    with pytest.raises(PublishError, match="already holds a published set"):
        publish(run, dest, storage_options=gcs, progress=False)
    assert publish(run, dest, replace=True, storage_options=gcs, progress=False).replaced
    fs = gcsfs.GCSFileSystem(**gcs)
    name = next(n for n in result.uploaded if n.endswith(".tar"))
    data = bytearray(fs.cat(f"vlcurate-gcs/sets/first/{name}"))
    data[100] ^= 0xFF
    fs.pipe(f"vlcurate-gcs/sets/first/{name}", bytes(data))
    fs.invalidate_cache()
    assert any(p.startswith(f"{name}:") for p in verify_dataset(dest))
    with pytest.raises(PublishError, match="the bucket 'no-such-gcs-bucket' does not exist"):
        publish(run, "gs://no-such-gcs-bucket/set", storage_options=gcs, progress=False)


class HoldingMotoServer:
    """moto's S3 server on loopback, whose upload of one named object hangs until released and then
    fails: a publish process can be killed while it is really mid-upload."""

    def __init__(self, hold_suffix: str):
        import threading

        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.reached, self.released = threading.Event(), threading.Event()
        app = DomainDispatcherApplication(create_backend_app)

        def holding(environ, start_response):
            if environ["REQUEST_METHOD"] in ("PUT", "POST") and environ["PATH_INFO"].endswith(hold_suffix):
                self.reached.set()
                self.released.wait(120)
                start_response("500 Internal Server Error", [("Content-Length", "0")])
                return [b""]
            return app(environ, start_response)

        self.server = make_server("127.0.0.1", 0, holding, threaded=True, request_handler=MotoRequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.released.set()
        self.server.shutdown()
        self.thread.join()


def test_a_publish_killed_mid_upload_resumes_with_what_is_missing(run, s3):
    """A real `vlcurate publish` process, SIGKILLed while its upload of the second shard is in flight:
    no manifest is there, and the next publish uploads only what the killed one had not finished."""
    import os
    import signal
    import subprocess
    import sys

    held = HoldingMotoServer("/shards/00001.tar")  # moto's backend is per process: same bucket as `s3`
    dest = f"s3://{BUCKET}/sets/killed"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "publish", run, dest, "--threads", "1",
             "-S", f"endpoint_url={held.endpoint}", "-S", "key=testing", "-S", "secret=testing",
             "-S", 'client_kwargs={"region_name": "us-east-1"}'],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert held.reached.wait(120), "the publish never reached the second shard"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        held.stop()
    fs = remote_fs(s3)
    before = {p.split("/sets/killed/", 1)[1] for p in fs.find(f"{BUCKET}/sets/killed")}
    # the one upload that finished, no manifest, and the killed publish's lock (this machine, its pid
    # gone: the next publish here takes it over; from elsewhere it names it, to delete by hand)
    assert before == {"shards/00000.tar", ".vlcurate.lock"}
    resumed = publish(run, dest, storage_options=s3, threads=1, progress=False)
    assert resumed.skipped == ["shards/00000.tar"] and "shards/00001.tar" in resumed.uploaded
    assert not fs.exists(f"{BUCKET}/sets/killed/.vlcurate.lock")
    assert verify_dataset(dest) == []


def test_a_second_publish_to_the_same_destination_waits_its_turn(run, tmp_path):
    """Two publishes into one destination overwrote each other's files under one manifest (verify
    then failed). The destination holds a lock while a publish runs: the second stops naming it."""
    import json
    import socket

    from pipelines.io.run_lock import LOCK_NAME

    dest = tmp_path / "dest"
    dest.mkdir()
    holder = {"host": "publisher-2", "pid": 77, "since_utc": "2026-11-28T00:00:00+00:00", "command": "vlcurate publish"}
    (dest / LOCK_NAME).write_text(json.dumps(holder))
    with pytest.raises(PublishError, match="is being published to by another run: pid 77 on publisher-2"):
        publish(run, str(dest), progress=False)
    assert sorted(p.name for p in dest.iterdir()) == [LOCK_NAME]
    # a lock left on this machine by a publish that died is taken over
    (dest / LOCK_NAME).write_text(json.dumps({**holder, "host": socket.gethostname(), "pid": 2 ** 22 + 3}))
    publish(run, str(dest), progress=False)
    assert verify_dataset(str(dest)) == [] and not (dest / LOCK_NAME).exists()


def test_a_cut_manifest_at_the_destination_is_one_line(run, tmp_path):
    dest = tmp_path / "dest"
    publish(run, str(dest), progress=False)
    manifest = dest / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:100])  # what a publish stopped while writing it left
    for replace in (False, True):
        with pytest.raises(PublishError, match="manifest.json is not a readable manifest .* delete it and publish again"):
            publish(run, str(dest), replace=replace, progress=False)


def test_a_run_published_into_itself_or_its_folder_is_refused_untouched(run, tmp_path):
    """Into itself, --replace removed the run's own manifest; into a folder of it, the run came to
    hold a copy of itself, which verify then listed as files not in its manifest."""
    before = sorted(p.relative_to(run) for p in Path(run).rglob("*"))
    for dest in (run, f"{run}/", f"{run}/published", str(Path(run).parent)):
        for replace in (False, True):
            with pytest.raises(PublishError, match="overlap"):
                publish(run, dest, replace=replace, progress=False)
    assert sorted(p.relative_to(run) for p in Path(run).rglob("*")) == before


def test_a_manifest_of_another_shape_is_named_as_such_not_as_refused_credentials(run, tmp_path):
    from pipelines.drivers.publish import one_line

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"a": 1}')  # pydantic's "extra_forbidden" read as "forbidden"
    with pytest.raises(PublishError, match=r"is not a vlcurate manifest: .* Field required"):
        publish(str(broken), str(tmp_path / "dest"), progress=False)
    assert "access refused" not in one_line(ValueError("1403 bytes; credentials_file unset"), "x")
    assert "access refused" in one_line(RuntimeError("An error occurred (403) when calling"), "x")


def test_cli_curate_into_s3_with_storage_options_and_worker_processes(pool_dir, s3):
    """`curate -S` (it had no such option: only the environment could point it at an endpoint), with
    Beam's multi_processing workers, which get the options through fsspec's FSSPEC_S3 variable."""
    out = f"s3://{BUCKET}/runs/cli-mp"
    options = [x for key, value in s3.items() for x in ("-S", f"{key}={value if isinstance(value, str) else json.dumps(value)}")]
    result = vlcurate("curate", str(ROOT / "manifests/recipes/quickstart.yaml"), "-i", f"{pool_dir}/shards/00000.tar",
                      "-o", out, "-q", *options, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert result.returncode == 0, result.stderr[-2000:]
    checked = vlcurate("verify", out, *options)
    assert checked.returncode == 0 and checked.stdout.startswith("ok:"), checked.stdout + checked.stderr
    rebuilt = vlcurate("report", out, *options)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
