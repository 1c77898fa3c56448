"""`vlcurate curate --dry-run` with a download block: the checks a download makes before it writes
anything (the URL list is there, the distributor's package imports) are problems of the plan too."""

from __future__ import annotations

import sys

import pytest

from manifests.recipe import load_recipe, parse_recipe
from pipelines.drivers.curate import CurateError
from pipelines.drivers.download import DownloadError
from pipelines.drivers.plan import describe_plan
from pipelines.io.url_lists import UrlListError
from tests.test_cli import ROOT, vlcurate

DOWNLOAD_QUICKSTART = str(ROOT / "manifests/recipes/download_quickstart.yaml")


def test_dry_run_refuses_a_missing_url_list_in_one_line(tmp_path):
    missing, out = str(tmp_path / "nourls.parquet"), tmp_path / "out"
    with pytest.raises(UrlListError, match=f"the URL list {missing} does not exist"):
        describe_plan(load_recipe(DOWNLOAD_QUICKSTART), missing, str(out))
    result = vlcurate("curate", DOWNLOAD_QUICKSTART, "-i", missing, "-o", str(out), "--dry-run")
    assert result.returncode == 2 and result.stderr.strip() == f"error: the URL list {missing} does not exist"
    assert not out.exists()


def test_dry_run_refuses_a_distributor_whose_package_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # how Python blocks an import: missing whatever is installed
    (tmp_path / "urls.txt").write_text("http://localhost/a.jpg\n")
    with pytest.raises(DownloadError, match="download.distributor: ray needs the 'ray' package"):
        describe_plan(parse_recipe({"name": "t", "download": {"distributor": "ray"}}), str(tmp_path / "urls.txt"),
                      str(tmp_path / "out"))


def test_dry_run_refuses_an_output_the_run_would_refuse(pool_dir, tmp_path):
    """It printed the problem as a plan line and exited 0, so a script took the plan for good."""
    quickstart = load_recipe(ROOT / "manifests/recipes/quickstart.yaml")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CurateError, match=f"{blocker} is a file, not a directory; choose another output directory"):
        describe_plan(quickstart, f"{pool_dir}/shards/*.tar", str(blocker))
    with pytest.raises(CurateError, match="--input matches files inside --output"):
        describe_plan(quickstart, f"{pool_dir}/shards/*.tar", str(pool_dir))
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "manifest.json").write_text("{}")
    with pytest.raises(CurateError, match="is not empty; pass --overwrite"):
        describe_plan(quickstart, f"{pool_dir}/shards/*.tar", str(finished))
    lines = describe_plan(quickstart, f"{pool_dir}/shards/*.tar", str(finished), overwrite=True)
    assert f"output {finished}: holds a finished run; replaced (--overwrite)" in lines
