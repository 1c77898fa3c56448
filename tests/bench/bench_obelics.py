"""Benchmark: OBELICS web extraction, quality against trafilatura and speed (parse, loop, Beam).

A. Quality, on the 27 saved real pages in ../shared/data/web/pages (19 English; 8 German, French
   or Chinese: novalanalove.com is German). Each page is decoded (decode_html), extracted into a
   Document (document_from_html, URL https://<file stem>/) and put through the node rules
   (filter_nodes, NodeRulesConfig() defaults, = obelics.yaml). Our kept paragraphs are compared
   with trafilatura's main text of the same decoded page (trafilatura.extract(html,
   include_comments=False), text output, tables included, its default precision/recall balance);
   trafilatura's paragraphs are its non-empty lines.

   Tokens: NFKC, lower-cased, soft hyphens and zero-width characters dropped, then runs of letters
   and digits ([^\\W_]+); CJK characters are one token each (Chinese has no spaces). Both sides are
   tokenized alike.

   recall             the share of trafilatura's paragraphs of >= 4 tokens that our kept text holds.
                      Primary rule (in order, "3-gram"): a paragraph is found when >= 80% of its
                      token 3-grams occur contiguously in our kept token stream (kept paragraphs
                      joined in order). Lenient rule ("bag"): >= 80% of its tokens occur anywhere
                      in our kept text; an upper bound, since words like "the" occur everywhere.
                      "prose": the 3-gram rule over trafilatura's paragraphs that are not list
                      items ("- ...") or table rows ("| ... |"), the two line kinds its text marks.
   boilerplate share  the share of our kept tokens that trafilatura's text does not hold: what it
                      judged boilerplate. Primary ("3-gram"): a kept token counts as content when
                      some 3-gram around it (it plus two neighbours within its paragraph) occurs in
                      trafilatura's token stream. Lenient ("bag"): the token occurs anywhere in
                      trafilatura's text; a lower bound for the same reason as above.

   Aggregates: macro (mean of per-page figures) over English pages and over all pages, and
   word-weighted (found tokens / eligible tokens; boilerplate tokens / kept tokens). A page with no
   kept text has recall 0 and no boilerplate share (left out of that macro mean, counted).
   English = fastText lid.176 says "en" for trafilatura's text. Project targets: recall >= 0.9,
   boilerplate share <= 0.15. For the worst pages, missed paragraphs are traced: either our walk
   produced them and a node rule removed them (which rule), or the walk never produced them (the
   element path shows which removed/hidden ancestor swallowed them, marked '!'); extra kept
   paragraphs are shown with their element path, and boilerplate tokens are tallied by where they
   sit (keywords of the element path: comments, related teasers, galleries, ...; a heuristic).

B. Speed, pages per second on one core (one process, wall clock, time.perf_counter; CPU seconds
   printed alongside): (1) selectolax LexborHTMLParser parse alone, (2) resiliparse HTMLTree.parse
   alone, (2b) our extract() alone (lexbor parse + walk), all three on the decoded pages in memory;
   (3) a plain Python loop doing the recipe's work: read_web_file over a .warc.gz (warcio-written,
   each page a 200 text/html response, the page set repeated with distinct URLs), node rules,
   document rules (fastText language included), document shards and rejection parquet written;
   (4) `vlcurate curate manifests/recipes/obelics.yaml --input X.warc.gz --output Y --overwrite`
   in-process (pipelines.drivers.curate.curate, DirectRunner, one worker), start-up, preflight and
   model loading included in both (3) and (4). (4) runs obelics.yaml cut to the stages (3) does
   (obelics_nodes, obelics_documents; kept and rejected counts must match); when the recipe holds
   more stages (document_dedup), (4b) runs it whole as well, reported beside it. All are warmed up
   once on a small WARC, then run interleaved; the best of the timed runs is reported. Project
   target: beam/plain <= 1.5x. Each copy of a page gets its own host (https://c<copy>.<stem>/), so
   URL and per-domain paragraph dedup see distinct pages; absolute image URLs still repeat.

    .venv/bin/python tests/bench/bench_obelics.py            # BENCH_OBELICS_COPIES=20 by default
    BENCH_OBELICS_DETAIL=all .venv/bin/python tests/bench/bench_obelics.py   # trace every page
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import SHARED  # noqa: E402
from tests.bench.obelics_quality import quality  # noqa: E402

PAGES = SHARED / "web" / "pages"
ROOT = Path(__file__).resolve().parents[2]
COPIES = int(os.environ.get("BENCH_OBELICS_COPIES", "20"))  # copies of the page set in the timed WARC
REPEATS = int(os.environ.get("BENCH_OBELICS_REPEATS", "2"))  # timed runs of loop and Beam (interleaved)
BEAM_TARGET = 1.5
LOOP_STAGES = ("obelics_nodes", "obelics_documents")


def pages_or_skip() -> list[Path]:
    paths = sorted(PAGES.glob("*.html"))
    if not paths:
        print(f"SKIP: no pages in {PAGES} (benchmarks use ../shared/data; tests never do)")
        sys.exit(0)
    return paths


# ---------------------------------------------------------------- B. speed
def write_warc(out: Path, pages: list[tuple[str, bytes]], copies: int) -> int:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(out, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for copy in range(copies):
            for stem, body in pages:
                http = StatusAndHeaders("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))],
                                        protocol="HTTP/1.1")
                record = writer.create_warc_record(f"https://c{copy}.{stem}/", "response",
                                                   payload=io.BytesIO(body), http_headers=http)
                writer.write_record(record)
    return copies * len(pages)


def plain_loop(warc: Path, out: Path, recipe) -> tuple[int, int, dict[str, float]]:
    """The recipe's work without Beam: read, node rules, document rules, shards and rejections."""
    from filters.keyed_random import key_hash
    from filters.language import LanguageIdentifier
    from filters.model_files import default_lid_model_path
    from filters.obelics_rules import WordLists, document_failure, filter_nodes
    from filters.sample import Rejection
    from manifests.document_format import write_document_shard
    from pipelines.io.rejection_files import write_rejection_files
    from pipelines.io.web_readers import read_web_file

    phases = Counter()
    started = time.perf_counter()
    configs = {e.name: e.config for e in recipe.stages}
    nodes, docs = configs["obelics_nodes"], configs["obelics_documents"]
    node_words, doc_words = WordLists.load(nodes), WordLists.load(docs)
    language = LanguageIdentifier(docs.language_model_path or default_lid_model_path())
    kept, rejected = [], []
    phases["start-up (word lists, fastText)"] += time.perf_counter() - started
    records = read_web_file(str(warc), recipe.input)
    while True:
        t0 = time.perf_counter()
        record = next(records, None)
        t1 = time.perf_counter()
        phases["read + decode + extract"] += t1 - t0
        if record is None:
            break
        if isinstance(record, Rejection):
            rejected.append(record)
            continue
        filter_nodes(record, nodes, node_words)
        t2 = time.perf_counter()
        failure = document_failure(record, docs, doc_words, language)
        if failure:
            rejected.append(Rejection.of(record, "obelics_documents", *failure))
        else:
            kept.append(record)
        t3 = time.perf_counter()
        phases["node rules"] += t2 - t1
        phases["document rules"] += t3 - t2
    t0 = time.perf_counter()
    kept.sort(key=lambda d: (key_hash(d.key, recipe.seed, "shard-order"), d.key))
    per = recipe.output.samples_per_shard
    out.mkdir(parents=True, exist_ok=True)
    for index in range(0, len(kept), per):
        write_document_shard(str(out), index // per, kept[index:index + per])
    by_stage: dict[str, list] = {}
    for r in rejected:
        by_stage.setdefault(r.stage, []).append(r)
    for stage, rows in by_stage.items():
        write_rejection_files(str(out), stage, rows, recipe.output.rejected_rows_per_file)
    phases["write shards + rejections"] += time.perf_counter() - t0
    return len(kept), len(rejected), dict(phases)


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def parse_rate(parse, htmls: list[str], min_seconds: float = 2.0) -> tuple[float, float]:
    """Pages per wall second and per CPU second, whole passes over the pages until min_seconds."""
    for html in htmls:  # warm-up
        parse(html)
    done, wall, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - wall) < min_seconds:
        for html in htmls:
            parse(html)
        done += len(htmls)
    return done / elapsed, done / (time.process_time() - cpu)


def speed(paths: list[Path]) -> None:
    from resiliparse.parse.html import HTMLTree
    from selectolax.lexbor import LexborHTMLParser

    from filters.html_extract import extract
    from filters.web_page import decode_html
    from manifests.recipe import load_recipe
    from pipelines.drivers.curate import curate

    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    full = load_recipe(ROOT / "manifests/recipes/obelics.yaml")
    # The loop does what the brief's comparison covers: reading, node rules, document rules, the
    # sink. obelics.yaml may hold more stages (document_dedup): Beam runs the recipe cut to the
    # loop's stages for the ratio, and the whole recipe once more, reported beside it.
    names = [e.name for e in full.stages]
    assert names[:2] == list(LOOP_STAGES), f"obelics.yaml should start with {LOOP_STAGES}, has {names}"
    recipe = full.model_copy(update={"stages": full.stages[:2]})
    extra = names[2:]
    raw = [(p.stem, p.read_bytes()) for p in paths]
    htmls = [decode_html(body, None).html for _, body in raw]
    mb = sum(len(b) for _, b in raw) / 1e6

    print(f"\nB. SPEED: pages per second, one core (wall; CPU-second rate in brackets); {len(paths)} pages, "
          f"{mb:.1f} MB of HTML per pass")
    rates = {}
    rates["(1) selectolax LexborHTMLParser parse"] = parse_rate(LexborHTMLParser, htmls)
    rates["(2) resiliparse HTMLTree.parse"] = parse_rate(HTMLTree.parse, htmls)
    rates["(2b) our extract(): lexbor parse + walk"] = parse_rate(lambda h: extract(h, "https://example.org/"), htmls)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, warc = tmp / "warmup.warc.gz", tmp / "pages.warc.gz"
        write_warc(small, raw, 1)
        n = write_warc(warc, raw, COPIES)
        # warm-up: imports, word lists, fastText, Beam's first-pipeline costs
        plain_loop(small, tmp / "warm-loop", recipe)
        curate(recipe, str(small), str(tmp / "warm-beam"), overwrite=True)

        if extra:
            curate(full, str(small), str(tmp / "warm-full"), overwrite=True)

        loop_runs, beam_runs, full_runs = [], [], []
        for rep in range(REPEATS):  # interleaved, so machine noise hits both alike
            (loop_kept, loop_rejected, phases), wall, cpu = timed(plain_loop, warc, tmp / f"loop{rep}", recipe)
            loop_runs.append((wall, cpu, phases))
            result, wall, cpu = timed(curate, recipe, str(warc), str(tmp / f"beam{rep}"), overwrite=True)
            beam_runs.append((wall, cpu, result.manifest.timings_s))
            if extra:
                full_result, wall, cpu = timed(curate, full, str(warc), str(tmp / f"full{rep}"), overwrite=True)
                full_runs.append((wall, cpu, full_result.manifest.timings_s))
        loop_s, loop_cpu, phases = min(loop_runs, key=lambda r: r[0])
        beam_s, beam_cpu, timings = min(beam_runs, key=lambda r: r[0])
    counts = result.manifest.counts
    assert (counts.kept, counts.rejected) == (loop_kept, loop_rejected), (
        f"both paths must do the same work: beam kept/rejected {counts.kept}/{counts.rejected}, "
        f"loop {loop_kept}/{loop_rejected}")
    rates["(3) plain loop: WARC, extract, rules, write"] = (n / loop_s, n / loop_cpu)
    rates["(4) beam curate, same stages as (3)"] = (n / beam_s, n / beam_cpu)
    if extra:
        full_s, full_cpu, full_timings = min(full_runs, key=lambda r: r[0])
        rates[f"(4b) beam curate, whole recipe (+{'+'.join(extra)})"] = (n / full_s, n / full_cpu)

    base = rates["(1) selectolax LexborHTMLParser parse"][0]
    for name, (wall_rate, cpu_rate) in rates.items():
        print(f"  {name:50s} {wall_rate:7.0f} pages/s  [{cpu_rate:5.0f}]  {base / wall_rate:6.2f}x selectolax's time")
    print(f"\n  WARC: {n:,} records ({COPIES} copies of the page set); kept {counts.kept:,}, "
          f"rejected {counts.rejected:,}")
    print(f"  plain loop {loop_s:6.2f} s: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
    print(f"  beam       {beam_s:6.2f} s: preflight {timings['preflight']:.2f} s, pipeline {timings['pipeline']:.2f} s")
    print(f"  all runs (s): loop {[round(r[0], 2) for r in loop_runs]}, beam {[round(r[0], 2) for r in beam_runs]}")
    if extra:
        fc = full_result.manifest.counts
        print(f"  beam whole recipe {full_s:6.2f} s: preflight {full_timings['preflight']:.2f} s, pipeline "
              f"{full_timings['pipeline']:.2f} s; kept {fc.kept:,}, rejected {fc.rejected:,} (runs "
              f"{[round(r[0], 2) for r in full_runs]}; counts differ from (3): image URLs repeat across copies)")
    print(f"  ratio beam/plain time (same stages): {beam_s / loop_s:.2f}x  (goal <= {BEAM_TARGET}x)")
    if extra:
        print(f"  ratio beam whole recipe / plain loop (the loop lacks {'+'.join(extra)}): {full_s / loop_s:.2f}x")
    walk = rates["(2b) our extract(): lexbor parse + walk"][0]
    print(f"  ratio plain loop / extract() alone: {walk / (n / loop_s):.2f}x, "
          f"extract() / selectolax parse: {base / walk:.2f}x, "
          f"resiliparse / selectolax parse: {base / rates['(2) resiliparse HTMLTree.parse'][0]:.2f}x")


def main() -> None:
    paths = pages_or_skip()
    quality(paths)
    speed(paths)


if __name__ == "__main__":
    main()
