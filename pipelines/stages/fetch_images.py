"""Fetch the images of documents through vlcurate download's guard, then OBELICS' image rules.

Documents travel in batches; each batch's image URLs are fetched on a thread pool with per-host
politeness (pipelines/io/image_fetch.py). An image that cannot be fetched or fails a rule is
removed from its document: an edit counted under its reason (http_404, robots_opt_out,
image_too_small, image_rendered_too_small: shown small by the page's width/height, ...). A document left with fewer than `min_images` images is rejected.
With `fetch: false` the stage keeps documents with image URLs only, to fetch later.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import apache_beam as beam
from pydantic import Field, model_validator

from filters.document import Document, ImageNode
from filters.document_images import image_problem, rendered_size_problem
from filters.image_format import extension_for
from filters.records import DOCUMENT, edit
from filters.sample import Rejection
from manifests.schema import Strict, check_ordered
from pipelines.beam.routing import RoutedDoFn, split
from pipelines.io.image_cache import CACHE_DIR
from pipelines.stages.spec import StageSpec

STAGE = "fetch_images"


class FetchImagesConfig(Strict):
    fetch: bool = Field(True, description="false: keep image URLs only (nodes without bytes), fetch later")
    threads: int = Field(32, ge=1, description="concurrent requests per worker process")
    per_host_connections: int = Field(4, ge=1, description="politeness: concurrent requests to one host")
    per_host_interval: float = Field(0.05, ge=0, description="politeness: seconds between request starts per host")
    timeout: float = Field(10, gt=0, description="seconds a socket may wait for each read")
    deadline: float = Field(60, gt=0, description="seconds for a whole request")
    max_image_bytes: int = Field(32 << 20, gt=0)
    max_pixels: int | None = Field(89_478_485, gt=0, description="images declaring more pixels are refused")
    user_agent_token: str | None = Field("vlcurate", description="added to the User-Agent; matched in X-Robots-Tag")
    honor_robots_tag: bool = True
    disallowed_header_directives: tuple[str, ...] = ("noai", "noimageai", "noindex", "noimageindex")
    allow_private_networks: bool = Field(False, description="fetch loopback and private addresses too (never link-local or cloud metadata ones)")
    allowed_formats: tuple[Literal["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"], ...] = Field(
        ("JPEG", "PNG", "WEBP"), min_length=1)  # [] would reject every image
    min_side: int | None = Field(150, ge=1, description="OBELICS: each side >= 150")
    max_side: int | None = Field(20_000, ge=1, description="OBELICS: each side <= 20000")
    max_aspect: float | None = Field(2.0, ge=1.0, description="OBELICS: w/h within [1/2, 2]")
    min_rendered_side: int | None = Field(150, ge=1, description="OBELICS: the <img> width/height attributes "
                                          ">= 150 (in pixels: judged before fetching; percentages: of the "
                                          "fetched size)")
    max_rendered_side: int | None = Field(20_000, ge=1, description="OBELICS: the <img> width/height "
                                          "attributes <= 20000")
    min_images: int = Field(1, ge=0, description="documents left with fewer fetched images are rejected")
    batch_size: int = Field(16, ge=1, description="documents whose images are fetched together")
    resume: bool = Field(True, description="keep fetched images in the run's scratch directory, so a run "
                         "killed mid-way and started again does not fetch them twice")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> FetchImagesConfig:
        check_ordered(self, ("min_side", "max_side"), ("min_rendered_side", "max_rendered_side"))
        return self


class _FetchFn(RoutedDoFn):
    stage = STAGE

    def __init__(self, config: FetchImagesConfig, root: str):
        self.config = config
        self.root = root

    def setup(self):
        from pipelines.io.image_cache import ImageCache
        from pipelines.io.image_fetch import HostPoliteness, ImageFetcher

        c = self.config
        self.fetcher = ImageFetcher(c, HostPoliteness(c.per_host_connections, c.per_host_interval))
        self.cache = ImageCache(self.root) if c.resume else None
        self.pool = ThreadPoolExecutor(c.threads, thread_name_prefix="fetch_images")

    def _fetch(self, url: str):
        from pipelines.io.image_fetch import Fetched

        if self.cache is not None and (data := self.cache.get(url)) is not None:
            return Fetched(data, cached=True)
        result = self.fetcher.fetch(url)
        if self.cache is not None and result.data is not None:
            self.cache.put(url, result.data)
        return result

    def teardown(self):
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _shown_problem(self, node: ImageNode, width: int | None = None, height: int | None = None):
        c = self.config
        return rendered_size_problem(node.meta, width, height, min_side=c.min_rendered_side,
                                     max_side=c.max_rendered_side)

    def handle(self, docs: list[Document]):
        urls = sorted({n.url for d in docs for n in d.nodes if isinstance(n, ImageNode) and n.image is None
                       and n.url and self._shown_problem(n) is None})
        fetched = dict(zip(urls, self.pool.map(self._fetch, urls)))
        # Decide for every document before changing any: if one raises, the guard retries the batch
        # record by record, and the others must still hold their failed images to count them again.
        decided = [self._decide(doc, fetched) for doc in docs]
        out = []
        for doc, (kept, attached, edits) in zip(docs, decided):
            for node, (data, meta) in attached:
                node.image, node.image_ext = data, extension_for(data)
                node.meta.update(meta)
            doc.nodes = kept
            out.extend(edit(reason, n) for reason, n in sorted(edits.items()))
            images = sum(1 for n in doc.nodes if isinstance(n, ImageNode))
            out.append(doc if images >= self.config.min_images else Rejection.of(
                doc, STAGE, "no_image_left", f"{images} images fetched and kept"))
        return out

    def _decide(self, doc: Document, fetched: dict):
        kept, attached, edits = [], [], {}
        for node in doc.nodes:
            if isinstance(node, ImageNode) and node.image is None:
                shown = self._shown_problem(node)  # shown too small in pixels: never fetched
                reason, image = (shown.reason, None) if shown else self._attach(node, fetched.get(node.url))
                if reason is not None:
                    edits[reason] = edits.get(reason, 0) + 1
                    continue
                attached.append((node, image))
            kept.append(node)
        return kept, attached, edits

    def _attach(self, node: ImageNode, result) -> tuple[str | None, tuple | None]:
        """(reason it goes, None), or (None, (bytes, metadata)) to attach."""
        if result is None:
            return "image_url_missing", None
        if result.data is None:
            return result.reason, None
        problem, header = image_problem(result.data, self.config)
        if problem is None:  # percentages of the fetched size
            problem = self._shown_problem(node, header.width, header.height)
        if problem is not None:
            return problem.reason, None
        return None, (result.data, {"original_width": header.width, "original_height": header.height,
                                    "format": header.format})


class FetchImagesStage(beam.PTransform):
    def __init__(self, config: FetchImagesConfig, root: str):
        super().__init__()
        self.config = config
        self.root = root

    def expand(self, docs):
        if not self.config.fetch:
            return split(docs, "KeepUrls", lambda d: d, stage=STAGE, kind=Document)
        batches = docs | "Batch" >> beam.BatchElements(
            min_batch_size=self.config.batch_size, max_batch_size=self.config.batch_size,
        ).with_output_types(beam.typehints.List[Document])
        return split(batches, "Fetch", _FetchFn(self.config, self.root), stage=STAGE, kind=Document)


SPEC = StageSpec(
    name=STAGE,
    summary="download documents' images through the guarded downloader (robots opt-out, politeness), "
            "then OBELICS' image rules; failures are edits",
    config=FetchImagesConfig,
    build=lambda config, context: FetchImagesStage(
        config.model_copy(update={"allow_private_networks": True}) if context.allow_private_networks else config,
        context.root),
    accepts=(DOCUMENT,),
    produces=DOCUMENT,
    reasons=("no_image_left",),
    keeps_on_resume=lambda config: (f"{CACHE_DIR}/",) if config.fetch and config.resume else (),
    # the download's reasons (filters/download_reasons.py, filters/url_safety.py) and the image rules'
    edits=("http_NNN", "timeout", "dns_failure", "connection_refused", "connection_error", "tls_error",
           "redirect_loop", "redirect_scheme_not_allowed", "url_malformed", "url_has_credentials",
           "url_scheme_not_allowed", "url_private_address", "private_address", "robots_opt_out", "response_too_large", "image_too_many_pixels",
           "image_format_not_allowed", "image_too_small", "image_too_large", "image_aspect_too_extreme",
           "image_rendered_too_small", "image_rendered_too_large", "image_truncated", "image_undecodable", "image_url_missing", "download_failed"),
)
