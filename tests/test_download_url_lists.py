"""URL lists into `vlcurate download`: the formats read, rows that cannot be read whole (each one
that row's rejection), international URLs and credentials, and the columns users bring along."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.recipe import parse_recipe
from pipelines.drivers.curate import curate
from pipelines.drivers.download import download
from pipelines.io.url_lists import UrlListError, read_url_list
from tests.image_server import ImageServer
from tests.test_download import recipe, write_urls

@pytest.mark.parametrize("fmt", ["csv", "tsv", "txt", "parquet"])
def test_url_list_formats(tmp_path, fmt):
    urls, captions = ["http://example.com/a.jpg", "http://example.com/b.jpg"], ["first, with comma", "second"]
    path = tmp_path / f"list.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.table({"link": urls, "alt": captions}), path)
    elif fmt == "txt":
        path.write_text("\n".join(urls) + "\n\n")
    else:
        sep = "," if fmt == "csv" else "\t"
        quoted = [f'"{c}"' if sep in c else c for c in captions]
        path.write_text(f"link{sep}alt\n" + "".join(f"{u}{sep}{c}\n" for u, c in zip(urls, quoted)))
    table = read_url_list(str(path), "link" if fmt != "txt" else "url", "alt" if fmt != "txt" else None)
    assert table.column("url").to_pylist() == urls
    assert table.column("caption").to_pylist() == (captions if fmt != "txt" else [None, None])


def test_url_list_errors_name_the_columns(tmp_path):
    pq.write_table(pa.table({"URL": ["http://x.com/a.jpg"], "TEXT": ["a"]}), tmp_path / "l.parquet")
    with pytest.raises(UrlListError, match="no column 'url' \\(columns: URL, TEXT\\); set download.url_column"):
        read_url_list(str(tmp_path / "l.parquet"))
    with pytest.raises(UrlListError, match="are parquet, csv, tsv, txt"):
        read_url_list(str(tmp_path / "l.json"))


def test_a_list_that_breaks_one_row_costs_that_row_and_one_it_cannot_read_is_one_line(tmp_path, caplog):
    import datetime

    from pipelines.io.url_lists import ROW_PROBLEM

    bad = tmp_path / "bad.csv"  # an unquoted comma (extra fields), a latin-1 caption, an unmatched quote
    bad.write_bytes(b"url,caption\nhttp://x.com/0.jpg,a red circle\nhttp://x.com/1.jpg,a,b,c\n"
                    b"http://x.com/2.jpg,caf\xe9 au lait\nhttp://x.com/3.jpg,\"open quote\nhttp://x.com/4.jpg,lost\n")
    table = read_url_list(str(bad))
    assert table.column("url").to_pylist() == ["http://x.com/0.jpg", "http://x.com/2.jpg", "http://x.com/3.jpg", None]
    problems = table.column(ROW_PROBLEM).to_pylist()
    assert problems[0] is None and problems[2] is None
    assert problems[1] == "column 'caption' is not UTF-8 text: b'caf\\xe9 au lait'"
    assert problems[3].endswith("has 4 fields where the header has 2 (an unquoted delimiter?): "
                                "'http://x.com/1.jpg,a,b,c'")
    assert "1 value(s) span several lines: an unmatched" in caplog.text
    # columns KEY.json cannot hold as they are (img2dataset's json.dumps failed on every such row)
    pq.write_table(pa.table({"url": ["http://x.com/a.jpg"], "caption": ["a"], "day": [datetime.date(2024, 5, 1)],
                             "price": pa.array([1], pa.decimal128(5, 2))}), tmp_path / "typed.parquet")
    typed = read_url_list(str(tmp_path / "typed.parquet"))
    assert (typed.column("day").to_pylist(), typed.column("price").to_pylist()) == (["2024-05-01"], ["1.00"])
    # a list that cannot be read at all: one line each
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(UrlListError, match="empty.csv: cannot be read as csv"):
        read_url_list(str(tmp_path / "empty.csv"))
    twice = pa.Table.from_arrays([pa.array(["http://x.com/a.jpg"]), pa.array(["http://x.com/b.jpg"])],
                                 names=["url", "url"])
    pq.write_table(twice, tmp_path / "twice.parquet")
    with pytest.raises(UrlListError, match="column 'url' appears more than once"):
        read_url_list(str(tmp_path / "twice.parquet"))


def test_rows_the_list_could_not_hold_whole_are_rejections_of_the_download(tmp_path):
    with ImageServer() as server:
        path = tmp_path / "u.csv"
        path.write_bytes(f"url,caption\n{server.base}/img/0.jpg,a red circle\n{server.base}/img/1.jpg,a,b\n"
                         f"{server.base}/img/2.jpg,caf\xe9\n".encode("latin-1"))
        result = download(recipe(), str(path), str(tmp_path / "dl"), allow_private_networks=True)
    m = result.manifest
    assert (m.counts.input, m.counts.kept, m.counts.rejected) == (3, 1, 2)
    assert m.funnel[0].reasons == {"url_list_bad_row": 2}


def test_international_urls_are_fetched_and_credentials_never_written(tmp_path):
    with ImageServer() as server:
        port = server.server_address[1]
        urls = [f"{server.base}/img/3.caf\u00e9.jpg", f"http://user:secret@127.0.0.1:{port}/img/4.jpg"]
        result = download(recipe(), write_urls(tmp_path / "u.parquet", urls), str(tmp_path / "dl"),
                          allow_private_networks=True)
        assert server.requests == ["/img/3.caf%C3%A9.jpg"]  # as a browser sends it; the other never requested
    m = result.manifest
    assert (m.counts.kept, m.funnel[0].reasons) == (1, {"url_has_credentials": 1})
    table = pq.read_table(tmp_path / "dl" / m.rejected[0].name).to_pylist()
    assert table[0]["url"] == f"http://<redacted>@127.0.0.1:{port}/img/4.jpg"
    assert b"secret" not in (tmp_path / "dl" / m.rejected[0].name).read_bytes()


def test_columns_users_bring_travel_into_key_json(tmp_path):
    """DataComp's uid (how people join with other metadata), a license, any scalar column of the URL
    list reaches each sample's KEY.json under its own name, through the download and a curation."""
    import json
    import tarfile

    with ImageServer() as server:
        urls = [f"{server.base}/img/{i}.jpg" for i in range(3)]
        table = pa.table({"url": urls, "caption": [f"a red square number {i} on a table" for i in range(3)],
                          "uid": [f"{i:032x}" for i in range(3)], "license": ["cc-by", "cc0", None],
                          "status": ["from the list"] * 3})  # img2dataset's own field: kept as input_status
        pq.write_table(table, tmp_path / "urls.parquet")
        result = download(recipe(), str(tmp_path / "urls.parquet"), str(tmp_path / "raw"), allow_private_networks=True)
    assert result.manifest.counts.kept == 3
    with tarfile.open(tmp_path / "raw" / result.manifest.shards[0].name) as tar:
        metas = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    assert sorted((m["uid"], m["license"], m["input_status"], m["status"]) for m in metas) == [
        (f"{i:032x}", lic, "from the list", "success") for i, lic in enumerate(["cc-by", "cc0", None])]
    out = curate(parse_recipe({"name": "t", "stages": []}), str(tmp_path / "raw" / "shards" / "*.tar"),
                 str(tmp_path / "curated"))
    with tarfile.open(tmp_path / "curated" / out.manifest.shards[0].name) as tar:
        curated = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    assert sorted(m["uid"] for m in curated) == [f"{i:032x}" for i in range(3)]
