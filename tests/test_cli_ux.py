"""The curate command line as a new user meets it: misspelled options refused with a suggestion (real
Beam options still pass), --dry-run prints the plan and writes nothing, --limit runs the first N
records, a run that keeps nothing says so (and fails with --fail-on-empty), and progress bars."""

from __future__ import annotations

import io
import tarfile

import pytest

from manifests.manifest import read_manifest
from manifests.recipe import load_recipe, parse_recipe
from pipelines.drivers.curate import CurateError, curate
from tests.conftest import make_sample
from tests.test_cli import ROOT, vlcurate

QUICKSTART = str(ROOT / "manifests/recipes/quickstart.yaml")


def test_a_misspelled_option_is_refused_with_a_suggestion(pool_dir, tmp_path):
    out = tmp_path / "out"
    result = vlcurate("curate", QUICKSTART, "-i", f"{pool_dir}/shards/*.tar", "-o", str(out), "--overwirte")
    assert result.returncode == 2 and "unknown option --overwirte: did you mean --overwrite?" in result.stderr
    beam = vlcurate("curate", QUICKSTART, "-i", f"{pool_dir}/shards/*.tar", "-o", str(out), "--direct_num_worker=2")
    assert beam.returncode == 2 and "did you mean --direct_num_workers?" in beam.stderr
    assert not out.exists()  # refused before anything was written
    # --input is required, yet a misspelt --inputs is named as such, not reported as a missing --input
    typo = vlcurate("curate", QUICKSTART, "--inputs", f"{pool_dir}/shards/*.tar", "-o", str(out))
    assert typo.returncode == 2 and "unknown option --inputs: did you mean --input?" in typo.stderr
    missing = vlcurate("curate", QUICKSTART, "-o", str(out))
    assert missing.returncode == 2 and "missing option --input / -i" in missing.stderr
    assert not out.exists()


def test_our_option_spelt_with_underscores_or_a_beam_option_without_its_value_is_one_line():
    from pipelines.cli import CURATE_OPTIONS
    from pipelines.drivers.beam_args import UnknownOptionError, check_beam_args

    # --dry_run is Dataflow's own option (it takes a value): argparse printed Beam's whole usage.
    with pytest.raises(UnknownOptionError, match=r"unknown option --dry_run: did you mean --dry-run\?"):
        check_beam_args(["--dry_run"], CURATE_OPTIONS)
    with pytest.raises(UnknownOptionError, match="argument --runner: expected one argument") as caught:
        check_beam_args(["--runner"], CURATE_OPTIONS)
    assert "\n" not in str(caught.value)
    check_beam_args(["--runner=DirectRunner", "--direct_num_workers=2"], CURATE_OPTIONS)  # real ones pass


def test_real_beam_options_still_reach_beam(pool_dir, tmp_path):
    result = vlcurate("curate", QUICKSTART, "-i", f"{pool_dir}/shards/00000.tar", "-o", str(tmp_path / "out"),
                      "--limit", "12", "--direct_running_mode", "in_memory", "--direct_num_workers=1", "-q")
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(tmp_path / "out")
    assert manifest.versions["direct_running_mode"] == "in_memory" and manifest.inputs["limit"] == 12
    assert " INFO " not in result.stderr  # --quiet: warnings and errors only


def test_dry_run_prints_the_plan_and_writes_nothing(pool_dir, tmp_path):
    out = tmp_path / "out"
    result = vlcurate("curate", QUICKSTART, "-i", f"{pool_dir}/shards/*.tar", "-o", str(out), "--dry-run")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "recipe 'quickstart': sample records in, sample records out" in text
    assert "1. heuristics [sample]" in text and "model fasttext-lid.176 (sha256" in text and "on cpu" in text
    assert f"output {out}: new or empty; would be written" in text and "nothing was written" in text
    assert not out.exists()


def test_limit_reads_the_first_records_in_file_order(pool_dir, tmp_path):
    recipe = load_recipe(QUICKSTART)
    shards = sorted((pool_dir / "shards").glob("*.tar"))
    with tarfile.open(shards[0]) as tar:
        first_keys = list(dict.fromkeys(m.name.split(".")[0] for m in tar))
    runs = [curate(recipe, f"{pool_dir}/shards/*.tar", str(tmp_path / f"run{i}"), limit=50) for i in range(2)]
    one, two = (r.manifest for r in runs)
    assert one.counts.input == 50 and one.counts.kept + one.counts.rejected == 50
    assert one.timings_s["stage heuristics"] > 0  # per-stage compute, from Beam's metrics
    assert len(first_keys) == 40  # the pool's shards hold 40: the limit runs into the second file
    assert [s.sha256 for s in one.shards] == [s.sha256 for s in two.shards]  # the same records, the same bytes
    kept = set()
    for shard in one.shards:
        with tarfile.open(tmp_path / "run0" / shard.name) as tar:
            kept |= {m.name.split(".")[0] for m in tar}
    with tarfile.open(shards[1]) as tar:
        second_keys = list(dict.fromkeys(m.name.split(".")[0] for m in tar))
    assert kept <= set(first_keys) | set(second_keys[:10])


def test_a_run_that_keeps_nothing_says_so(tmp_path):
    from tests.conftest import make_image

    with tarfile.open(tmp_path / "in.tar", "w") as tar:
        for i in range(3):
            for ext, data in (("jpg", make_image()), ("txt", b"tiny")):
                info = tarfile.TarInfo(f"s{i}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (tmp_path / "r.yaml").write_text("name: strict\nstages:\n  - heuristics: {language: {enabled: false}}\n")
    args = ("curate", str(tmp_path / "r.yaml"), "-i", str(tmp_path / "in.tar"))
    loud = vlcurate(*args, "-o", str(tmp_path / "a"))
    assert loud.returncode == 0 and "warning: the run kept none of its 3 input records" in loud.stderr
    failing = vlcurate(*args, "-o", str(tmp_path / "b"), "--fail-on-empty")
    assert failing.returncode == 3 and "kept none" in failing.stderr


def test_progress_bars_show_files_records_and_shards(pool_dir, tmp_path, capsys):
    recipe = parse_recipe({"name": "plain", "stages": [{"heuristics": {"language": {"enabled": False}}}],
                           "output": {"samples_per_shard": 50}})
    result = curate(recipe, f"{pool_dir}/shards/*.tar", str(tmp_path / "out"), progress=True)
    files = len(list((pool_dir / "shards").glob("*.tar")))
    shown = capsys.readouterr().out
    assert "read files" in shown and f"{files}/{files}" in shown
    assert f"{result.manifest.counts.input:,} records" in shown and "write shards" in shown
    heuristics = next(f for f in result.manifest.funnel if f.stage == "heuristics")
    assert any(line.startswith("heuristics") and f"{heuristics.input}/?" in line  # records it handled, and /s
               for line in shown.splitlines()), shown
    assert not (tmp_path / "out" / "_run").exists()  # the markers go with the scratch directory


@pytest.mark.parametrize("bad", [["stray"], ["--no-such-option=1"]])
def test_stray_arguments_are_refused(bad, pool_dir, tmp_path):
    result = vlcurate("curate", QUICKSTART, "-i", f"{pool_dir}/shards/*.tar", "-o", str(tmp_path / "o"), *bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "error:" in result.stderr


def test_help_paragraphs_are_reflowed_but_examples_keep_their_lines():
    from pipelines.cli_help import reflow

    doc = """First line
    wrapped in the source.

    A second paragraph,
    also wrapped.
    Example: vlcurate a
    Example: vlcurate b
    """
    assert reflow(doc) == ("First line wrapped in the source.\n\nA second paragraph, also wrapped.\n"
                           "Example: vlcurate a\nExample: vlcurate b")


def test_quiet_switches_off_the_gguf_loaders_own_bar():
    # transformers' GGUF loader calls tqdm directly (no switch covers it); run in a child so the patch
    # stays out of this test process.
    import subprocess
    import sys

    code = ("from trainers.llm import silence_progress_bars; silence_progress_bars(); "
            "import transformers.modeling_gguf_pytorch_utils as m; "
            "[None for _ in m.tqdm(range(3), desc='Converting and de-quantizing GGUF tensors...')]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "de-quantizing" not in result.stderr


def test_a_misspelt_train_or_eval_option_is_named_not_read_as_an_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data: {shards: x.tar}\n")
    resume = vlcurate("train", str(config), "--resum")
    assert resume.returncode == 2 and "unknown option --resum: did you mean --resume?" in resume.stderr
    beams = vlcurate("eval", str(config), "--beam=3")
    assert beams.returncode == 2 and "unknown option --beam: did you mean --beams?" in beams.stderr


def test_a_full_disk_mid_run_is_one_line_not_beams_tracebacks(pool_dir, tmp_path):
    """A file-size limit (what a full disk does to the next write) hits the shard writer inside Beam,
    which logs every retry's traceback and re-raises a RuntimeError. The user sees one line with
    the cause, exit code 2, and no manifest."""
    import resource
    import subprocess
    import sys

    out = tmp_path / "out"
    limited = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "curate", str(ROOT / "manifests/recipes/quickstart.yaml"),
         "-i", f"{pool_dir}/shards/*.tar", "-o", str(out), "-q"], capture_output=True, text=True, cwd=ROOT,
        timeout=300, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, resource.RLIM_INFINITY)))
    assert limited.returncode == 2, limited.stderr
    assert limited.stderr.strip().splitlines() == [
        "error: the run stopped: File too large. Free space or fix the permissions, then run it again"]
    assert not (out / "manifest.json").exists()


def test_storage_failures_are_found_through_wrapping_but_bugs_stay_bugs():
    from pipelines.storage_errors import storage_failure

    try:
        try:
            raise PermissionError(13, "Permission denied", "/data/out/shards/.00001.tar.tmp")
        except PermissionError as inner:
            raise RuntimeError("could not write the shard") from inner  # raised *from* it: its cause
    except RuntimeError as err:
        assert storage_failure(err) == ("the run stopped: Permission denied (/data/out/shards/.00001.tar.tmp). Free "
                                        "space or fix the permissions, then run it again")
    beam_text = RuntimeError("OSError: [Errno 28] No space left on device: '/d/x.tar' [while running 'W']")
    assert "No space left on device (/d/x.tar)" in storage_failure(beam_text)
    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert storage_failure(rust).startswith("the run stopped: No space left on device. Free space")
    try:  # a bug met while handling a PermissionError is a bug, not a storage failure
        try:
            raise PermissionError(13, "Permission denied", "/home/u/.cache/x")
        except PermissionError:
            raise TypeError("unsupported operand")
    except TypeError as err:
        assert storage_failure(err) is None
    assert storage_failure(ValueError("a bug")) is None
    assert storage_failure(RuntimeError("OSError: [Errno 2] No such file or directory")) is None


def test_a_full_disk_inside_a_stage_stops_the_run_instead_of_rejecting_every_record():
    import errno

    from pipelines.beam.routing import guarded_call

    def full(record):
        raise OSError(errno.ENOSPC, "No space left on device", "/out/_run/images/ab.jpg")

    def broken(record):
        raise OSError(errno.EIO if record else errno.ENOENT, "bad record")

    with pytest.raises(OSError, match="No space left"):
        guarded_call(full, make_sample("k1"), "fetch_images")
    (rejection,) = guarded_call(broken, make_sample("k2"), "fetch_images")
    assert rejection.reason == "error_OSError"


def test_a_runner_on_other_machines_refuses_local_paths_before_anything_runs(pool_dir, tmp_path):
    """Dataflow's workers cannot open the driver's files: the shipped metaclip recipe's metadata
    (resolved to this checkout), a local input or output would fail in every worker after the job
    started. Refused in one line, before anything is read or written (and nothing reaches a cloud)."""
    recipe = load_recipe(ROOT / "manifests/recipes/metaclip_balance.yaml")
    out = tmp_path / "out"
    with pytest.raises(CurateError) as err:
        curate(recipe, f"{pool_dir}/shards/*.tar", str(out), beam_args=["--runner=DataflowRunner"])
    message = str(err.value)
    assert message.startswith("the DataflowRunner runs workers on other machines, which cannot open local paths: ")
    assert f"--input: {pool_dir}/shards/*.tar" in message and f"--output: {out}" in message
    assert "metaclip.metadata: " in message and "metaclip_wordnet.json.gz" in message
    assert not out.exists()
    from pipelines.drivers.remote_runner import local_paths, runs_elsewhere

    assert local_paths(recipe, "gs://b/in/*.tar", "gs://b/out") == [
        f"metaclip.metadata: {recipe.stages[1].config.metadata}"]
    assert not runs_elsewhere("DirectRunner") and runs_elsewhere("FlinkRunner")
    # --dry-run says the same, before its plan
    tried = vlcurate("curate", str(ROOT / "manifests/recipes/quickstart.yaml"), "-i", f"{pool_dir}/shards/*.tar",
                     "-o", str(out), "--dry-run", "--runner=DataflowRunner")
    assert tried.returncode == 2 and tried.stderr.startswith("error: the DataflowRunner runs workers on other machines")
    assert not out.exists()
    # a misspelt runner was taken for one on other machines, and the message said so
    from pipelines.drivers.remote_runner import unknown_runner

    assert unknown_runner("DirectRuner") == "--runner=DirectRuner is not a Beam runner: did you mean DirectRunner?"
    assert unknown_runner("DataflowRunner") is None and unknown_runner("direct") is None
