"""`vlcurate sample-data --kind web`: a deterministic synthetic crawl, as gzipped WARC files.

Pages of a few made-up news sites, written the way real crawlers write them (a request and a
response record per fetch, warcinfo first), with what curation has to deal with on the web: site
navigation and footers, cookie banners and newsletter boxes repeated on every page of a site,
share buttons and logos as images, a spacer image on every page, pages fetched twice under
different URL spellings, pages in other languages, error and redirect responses, a PDF, and a
gzip member damaged in transit. Image URLs point at `.invalid` hosts: nothing is ever fetched.
"""

from __future__ import annotations

import io
import random
import uuid
from collections import Counter
from pathlib import Path

from pipelines.drivers.sample_data import remove_stale

SITES = ("harbour-news.invalid", "valley-times.invalid", "garden-weekly.invalid")
SUBJECTS = ("the harbour", "the old bridge", "the village school", "the market", "the river", "the orchard",
            "the library", "the football club", "the lighthouse", "the bakery")
EVENTS = ("reopened after a long winter", "was repaired by volunteers", "celebrated its hundredth year",
          "was flooded after the storm", "welcomed a new director", "held its first open day")
PEOPLE = ("Anna", "Ben", "Clara", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemal", "Lea")
ROLES = ("a fisherman", "the head teacher", "a retired nurse", "the baker", "a young architect", "the librarian")
TIMES = ("early on Monday", "on a rainy afternoon", "late last night", "at the weekend", "before sunrise")
SENTENCES = (
    "{who}, {role}, said that {subject} had always been the heart of the town and that {when} it felt alive again.",
    "When {who} arrived {when}, the street was already full of people who wanted to see {subject} with their own eyes.",
    "The work on {subject} took longer than planned, because the weather turned cold and the materials arrived late.",
    "{who} explained how {subject} had changed since it was built, and why so many families still care about it.",
    "Children from the nearby school painted pictures of {subject}, and {who} hung them in the window of the shop.",
    "Next spring the council wants to plant trees along the path to {subject}, {who} told the paper {when}.",
    "Most visitors stayed until the evening, and the cafes near the square ran out of bread and cake by six o'clock.",
    "A small exhibition of old photographs shows what the street looked like a century ago, when {who} was a child.",
    "{who} has lived in the town for forty years and remembers the day the first tram came down the hill.",
    "Nobody expected so many people to come, so the organisers opened the hall next door and served tea there.",
)
FOREIGN = (
    "Die Bewohner versammelten sich am frühen Morgen, und viele sagten, sie hätten jahrelang auf diesen Tag gewartet.",
    "Der Bürgermeister dankte allen Helfern und versprach, dass die Stadt sich in Zukunft gut darum kümmern werde.",
    "Im nächsten Frühjahr sollen entlang des Weges zum Wasser neue Bäume gepflanzt werden, sagte die Verwaltung.",
)
COOKIE = "We use cookies to improve your experience on our website. By browsing, you agree to our use of cookies."
NEWSLETTER = "Sign up for our newsletter and get the best stories from the town in your inbox every Friday morning."


def _article(rng: random.Random, site: str, i: int, foreign: bool) -> tuple[str, bytes]:
    subject, event = rng.choice(SUBJECTS), rng.choice(EVENTS)
    title = f"{subject.capitalize()} {event}"
    paragraphs = [f"{title.capitalize()}, and the whole town talked about it this week (story {i})."]
    for template in rng.sample(SENTENCES, 4):  # each page's prose its own: only the site's furniture repeats
        paragraphs.append(template.format(who=rng.choice(PEOPLE), role=rng.choice(ROLES), when=rng.choice(TIMES),
                                          subject=subject if template.count("{subject}") < 2 else "it"))
    if foreign:
        title, paragraphs = "Ein Tag in der Stadt, den niemand vergessen wird", list(FOREIGN)
    images = [f'<figure><img src="/media/{i}-{k}.jpg" alt="{subject} in the {("morning", "evening")[k]}" '
              f'width="800" height="600"><figcaption>{subject.capitalize()}, photographed by a reader.'
              f'</figcaption></figure>' for k in range(rng.choice((1, 1, 2)))]
    if foreign:
        images = [f'<img src="/media/{i}-0.jpg" alt="Der Hafen am Morgen">']
    body = [f'<header><img src="/static/{site.split(".")[0]}-logo.png"><nav><a href="/">Home</a> '
            f'<a href="/local">Local</a> <a href="/sport">Sport</a></nav></header>',
            f'<div class="cookie-banner"><p>{COOKIE}</p></div>', f"<article><h1>{title}</h1>",
            f"<p>{paragraphs[0]}</p>", images[0] if images else "",
            *(f"<p>{p}</p>" for p in paragraphs[1:3]), *images[1:], *(f"<p>{p}</p>" for p in paragraphs[3:]),
            '<p><img src="https://cdn.sharebar.invalid/spacer.gif"> Share</p>',
            f'<aside class="newsletter"><p>{NEWSLETTER}</p></aside></article>',
            "<footer><p>All rights reserved. Contact us. Privacy policy.</p></footer>"]
    html = (f'<!doctype html><html lang="{"de" if foreign else "en"}"><head><meta charset="utf-8">'
            f"<title>{title}</title><script>var tracking = 1;</script></head><body>{''.join(body)}</body></html>")
    return f"https://{site}/{i:04d}-{subject.split()[-1]}", html.encode("utf-8")


def _fixed_headers(rng: random.Random, i: int) -> dict[str, str]:
    return {"WARC-Record-ID": f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>",
            "WARC-Date": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"}


def write_crawl(out_dir: Path, n: int = 60, seed: int = 0, per_file: int = 30) -> dict:
    """n fetches into ceil(n / per_file) .warc.gz files; returns what was written, by kind."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    kinds: Counter[str] = Counter()
    files, members, fetched = [], [], []
    for i in range(n):
        site = SITES[i % len(SITES)]
        roll = rng.random()
        if roll < 0.06:
            kind = "redirect"
        elif roll < 0.10:
            kind = "pdf"
        elif roll < 0.20:
            kind = "foreign"
        elif roll < 0.28 and fetched:
            kind = "refetch"
        else:
            kind = "article"
        kinds[kind] += 1
        headers = [("Content-Type", "text/html; charset=utf-8")]
        status = "200 OK"
        if kind == "redirect":
            url, body, status = f"https://{site}/old/{i}", b"", "301 Moved Permanently"
            headers = [("Location", f"https://{site}/")]
        elif kind == "pdf":
            url, body, headers = f"https://{site}/report-{i}.pdf", b"%PDF-1.4\n%fake\n", [("Content-Type", "application/pdf")]
        elif kind == "refetch":  # the same page again, its URL spelled differently
            url, body = rng.choice(fetched)
            host = url.split("/")[2]
            url = url.replace(host, host.upper(), 1) + "#top"
        else:
            url, body = _article(rng, site, i, foreign=kind == "foreign")
            fetched.append((url, body))
        for record_type in ("request", "response"):
            buffer = io.BytesIO()
            writer = WARCWriter(buffer, gzip=True)
            fixed = _fixed_headers(rng, i)  # same seed, same bytes: no clock, no random uuid
            if record_type == "request":
                http = StatusAndHeaders("GET / HTTP/1.1", [("Host", site)], is_http_request=True)
                record = writer.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=http,
                                                   warc_headers_dict=fixed)
            else:
                http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
                record = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http,
                                                   warc_headers_dict=fixed)
            writer.write_record(record)
            members.append(buffer.getvalue())
        if len(members) >= 2 * per_file or i == n - 1:
            files.append(members)
            members = []
    if len(files[0]) > 4:  # one member damaged in transit: the reader resyncs at the next one
        broken = bytearray(files[0][3])
        broken[30:70] = bytes(40)
        files[0][3] = bytes(broken)
        kinds["damaged_gzip_member"] += 1
    for index, file_members in enumerate(files):
        name = f"crawl-{index:05d}.warc.gz"
        buffer = io.BytesIO()
        writer = WARCWriter(buffer, gzip=True)
        info = b"software: vlcurate sample-data --kind web\r\n"
        writer.write_record(writer.create_warc_record("", "warcinfo", payload=io.BytesIO(info), length=len(info),
                                                      warc_content_type="application/warc-fields",
                                                      warc_headers_dict={**_fixed_headers(rng, index),
                                                                         "WARC-Filename": name}))
        (out_dir / name).write_bytes(buffer.getvalue() + b"".join(file_members))
    written = {f"crawl-{index:05d}.warc.gz" for index in range(len(files))}
    return {"fetches": n, "records": 2 * n + len(files), "files": len(files), "kinds": dict(kinds),
            "removed": remove_stale(out_dir, r"crawl-\d{5}\.warc\.gz", written)}
