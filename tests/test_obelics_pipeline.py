"""The OBELICS pipeline end to end on Beam: WARC files built here -> documents -> rules -> dedup ->
shards in OBELICS' layout, read back by our reader, webdataset, HF datasets and duckdb; every WARC
record accounted for; the same output on the in-memory and the multi-process runner."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from manifests.document_format import iter_documents
from manifests.recipe import parse_recipe
from pipelines.drivers.curate import curate

SENTENCES = [
    "The river rose slowly through the night, and by morning the old bridge was under water.",
    "Farmers in the valley had seen floods before, but none of them remembered one this early in the year.",
    "Children watched from the hill as the water carried branches, fences and a small red boat past the village.",
    "When the rain finally stopped, the neighbours came out with shovels and began to clear the mud from the road.",
    "The school opened again a week later, and the teachers asked every pupil to write about what they had seen.",
    "Most of them wrote about the boat, which nobody ever claimed and which still sits in the square today.",
]
TEMPLATE = "Sign up for our weekly newsletter and get the best stories from the valley in your inbox every Friday."


def page(i: int, extra_images: list[str] = (), template: bool = False) -> bytes:
    # the number makes each paragraph unique to its page (only TEMPLATE repeats across the domain)
    paragraphs = [f"{SENTENCES[(i + 2 * j) % 6]} {SENTENCES[(i + 2 * j + 1) % 6]} (report {i}.{j})" for j in range(3)]
    body = [f"<p>{paragraphs[0]}</p>", f'<img src="/photos/{i}.jpg" alt="photo {i}">', f"<p>{paragraphs[1]}</p>",
            "<nav><a href='/'>Home</a></nav>", '<img src="/static/site-logo.png">', f"<p>{paragraphs[2]}</p>",
            "<p>Share</p>", *(f'<img src="{u}">' for u in extra_images)]
    if template:
        body.append(f"<p>{TEMPLATE}</p>")
    return f"<html><head><title>Story {i}</title></head><body>{''.join(body)}</body></html>".encode()


def write_warc(path, pages: list[tuple[str, bytes]], damaged: bool = False) -> int:
    """Writes the pages as gzipped response records (plus a request record each); returns records written."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    members = []
    for url, html in pages:
        for kind in ("response", "request"):
            out = io.BytesIO()
            writer = WARCWriter(out, gzip=True)
            if kind == "response":
                headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
                record = writer.create_warc_record(url, "response", payload=io.BytesIO(html), http_headers=headers)
            else:
                headers = StatusAndHeaders("GET / HTTP/1.1", [("Host", "x")], is_http_request=True)
                record = writer.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=headers)
            writer.write_record(record)
            members.append(out.getvalue())
    if damaged:  # a member whose deflate stream is overwritten, between good ones
        broken = bytearray(members[2])
        broken[20:60] = b"\x00" * 40
        members[2] = bytes(broken)
    path.write_bytes(b"".join(members))
    return len(members)


RECIPE = {
    "name": "obelics-test",
    "input": {"kind": "document"},
    "stages": [
        {"obelics_nodes": {}},
        {"obelics_documents": {"min_images": 1}},
        {"document_dedup": {"paragraph_min_documents": 3, "image_max_documents": 10}},
    ],
    "output": {"samples_per_shard": 5},
}


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    root = tmp_path_factory.mktemp("crawl")
    common = "https://cdn.example/spacer-v2.gif"  # in 12 documents: too common
    first = [(f"https://news.example/story/{i}", page(i, [common] if i < 12 else [], template=i < 4))
             for i in range(14)]
    second = [(f"https://NEWS.example:443/story/{i}#comments", page(i)) for i in (0, 1)]  # the same pages again
    second += [("https://other.example/a", b"<html><body><p>Too short.</p></body></html>")]
    written = write_warc(root / "a.warc.gz", first, damaged=True) + write_warc(root / "b.warc.gz", second)
    return root, written


@pytest.fixture(scope="module")
def run(crawl, tmp_path_factory):
    root, _ = crawl
    out = tmp_path_factory.mktemp("run") / "out"
    return curate(parse_recipe(RECIPE), str(root / "*.warc.gz"), str(out)), out


def test_every_warc_record_is_accounted_for(crawl, run):
    _, written = crawl
    result, _ = run
    counts = result.manifest.counts_by_kind["document"]
    assert counts.input == written  # one entry per record, the damaged member being one of them
    assert counts.input == counts.kept + counts.rejected
    read = next(f for f in result.manifest.funnel if f.stage == "read")
    assert read.reasons["warc_not_response"] == 17  # the request records
    assert read.reasons["warc_bad_gzip"] == 1


def test_rules_and_dedup_are_counted_in_the_funnel(run):
    result, _ = run
    funnel = {f.stage: f for f in result.manifest.funnel}
    nodes, dedup = funnel["obelics_nodes"], funnel["document_dedup"]
    assert nodes.edits["image_url_banned"] >= 15 and nodes.edits["paragraph_too_few_words"] >= 15
    # story/1's response is the broken member in a.warc.gz: its copy in b.warc.gz is no duplicate
    assert dedup.reasons == {"duplicate_url": 1}
    assert dedup.edits["image_url_too_common"] == 11  # in 11 documents (> 10)
    assert dedup.edits["paragraph_repeated_in_domain"] == 3  # in 3 documents (>= 3)
    assert funnel["obelics_documents"].reasons == {"document_too_few_images": 1}  # OBELICS' order: images first


def test_shards_read_back_in_obelics_layout(run):
    result, out = run
    docs = []
    for shard in result.manifest.shards:
        with open(out / shard.name, "rb") as f:
            docs += list(iter_documents(f, shard.name))
    assert len(docs) == result.manifest.counts.kept == 14  # 14 stories, one only in b.warc.gz
    for doc in docs:
        urls = [n.url for n in doc.nodes if hasattr(n, "alt_text")]
        assert urls and all("logo" not in u and "spacer" not in u for u in urls)
        assert not any(getattr(n, "text", None) in ("Share", "Home", TEMPLATE) for n in doc.nodes)
        assert doc.meta["domain"] == "news.example" and doc.meta["language"] == "en"
        assert {"warc_file", "warc_offset"} <= set(doc.meta)


def test_plain_webdataset_reads_the_shards(run):
    import webdataset as wds

    result, out = run
    urls = [str(out / s.name) for s in result.manifest.shards]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 14
    for sample in samples:
        layout = json.loads(sample["json"])
        assert len(layout["texts"]) == len(layout["images"])
        assert all((t is None) != (i is None) for t, i in zip(layout["texts"], layout["images"]))
        assert layout["general_metadata"]["domain"] == "news.example" and layout["url"] == layout["general_metadata"]["url"]


def test_hf_datasets_and_duckdb_read_the_parquets(run, tmp_path):
    import datasets
    import duckdb

    _, out = run
    table = datasets.load_dataset("parquet", data_files=str(out / "metadata" / "*.parquet"), split="train",
                                  cache_dir=str(tmp_path / "hf"))
    assert len(table) == 14 and set(table.features) >= {"texts", "images", "metadata", "general_metadata"}
    row = table[0]
    assert len(row["texts"]) == len(row["images"]) and json.loads(row["general_metadata"])["domain"] == "news.example"
    images = duckdb.sql(f"select count(*) from (select unnest(images) as u from '{out}/metadata/*.parquet') "
                        "where u is not null").fetchall()[0][0]
    assert images == 14  # one photo per document survives


@pytest.mark.slow
def test_same_output_on_the_multiprocess_runner(crawl, run, tmp_path):
    root, _ = crawl
    result, out = run
    other = curate(parse_recipe(RECIPE), str(root / "*.warc.gz"), str(tmp_path / "mp"),
                   beam_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"])

    def digest(manifest, base):
        return sorted((s.name, hashlib.sha256((base / s.name).read_bytes()).hexdigest()) for s in manifest.shards)

    assert digest(other.manifest, tmp_path / "mp") == digest(result.manifest, out)
    assert other.manifest.funnel == result.manifest.funnel


def test_the_report_shows_document_stats_with_their_cutoffs(run):
    result, out = run
    page = (out / "report.html").read_text()
    assert '<h2 id="kept">Kept documents</h2>' in page and "news.example" in page  # documents: url and text
    assert "<td>doc_words</td>" in page and "min_words = 10" in page and "max_words = 2000" in page
    assert result.manifest.funnel[0].kind == "document" and '<h3>document records' in page
