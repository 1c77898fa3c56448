"""The heuristic stage: DataComp's basic filter, caption cleanup, boilerplate, complexity, image checks.

Rules run cheapest first, on a batch of samples, and a sample stops at its first failure, whose
reason is recorded. The two models (fastText, spaCy) run batched, and only on samples still in play.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from filters.caption_rules import BoilerplateMatcher, count_words
from filters.complexity import ComplexityCounter
from filters.image_checks import (ImageHeader, decode_problem, original_size, read_header, size_problem,
                                  truncation_problem)
from filters.language import LanguageIdentifier
from filters.model_files import default_lid_model_path, directory_sha256, file_sha256
from filters.sample import Rejection, Sample
from filters.text_cleanup import clean_caption, repair_text

if TYPE_CHECKING:
    from manifests.recipe import HeuristicsConfig

STAGE = "heuristics"
FTFY_REPAIRED = "caption_ftfy_repaired"  # annotation on a sample whose caption ftfy changed, and its edit reason

Outcome = Sample | Rejection


class HeuristicFilter:
    """Built once per worker (models load here); `filter_batch` is then called many times."""

    def __init__(self, config: HeuristicsConfig):
        self.config = config
        self.boilerplate = BoilerplateMatcher(config.boilerplate.patterns) if config.boilerplate.enabled else None
        self.language: LanguageIdentifier | None = None
        if config.language.enabled:
            self.language = LanguageIdentifier(config.language.model_path or default_lid_model_path())
        self.complexity: ComplexityCounter | None = None
        if config.complexity.enabled:
            self.complexity = ComplexityCounter(config.complexity.model, config.complexity.batch_size)

    def models(self) -> list[dict[str, str | None]]:
        """Identity of the models this stage uses, for the manifest."""
        found = []
        if self.language:
            found.append({"stage": STAGE, "name": "fasttext-lid.176", "path": self.language.model_path,
                          "sha256": file_sha256(self.language.model_path)})
        if self.complexity:
            c = self.complexity
            found.append({"stage": STAGE, "name": c.model_name, "version": c.model_version, "path": c.model_path,
                          "sha256": directory_sha256(c.model_path) if c.model_path else None})
        return found

    def filter_batch(self, samples: list[Sample]) -> list[Outcome]:
        """Same length and order as `samples`: each either the (annotated) Sample or its Rejection."""
        outcomes: list[Outcome] = [self._per_sample_rules(s) for s in samples]
        self._batched(outcomes, self._language_rule)
        self._decode_rule(outcomes)
        self._batched(outcomes, self._complexity_rule)
        return outcomes

    # -- per-sample rules (no model) -------------------------------------------------------
    def _per_sample_rules(self, sample: Sample) -> Outcome:
        cfg = self.config
        if cfg.caption.enabled or cfg.boilerplate.enabled or cfg.language.enabled or cfg.complexity.enabled:
            if sample.caption is None:
                return Rejection.of(sample, STAGE, "caption_missing", "the record has no caption")
        if cfg.caption.enabled:
            raw = cleaned = sample.caption
            # ftfy first: mojibake is damage from decoding the page's bytes, done before its markup
            # was read; the HTML cleanup then collapses the spaces a repair can leave ("Â\xa0").
            if cfg.caption.ftfy:
                cleaned = repair_text(raw)
                if cleaned != raw:
                    sample.annotations[FTFY_REPAIRED] = True
            if cfg.caption.clean_html:
                cleaned = clean_caption(cleaned)
            if cleaned != raw:
                sample.annotations["caption_raw"] = raw
                sample.caption = cleaned
            words = count_words(sample.caption)
            sample.annotations["caption_words"] = words
            if words < cfg.caption.min_words:
                return Rejection.of(sample, STAGE, "caption_too_few_words", f"{words} < {cfg.caption.min_words}")
            if len(sample.caption) < cfg.caption.min_chars:
                return Rejection.of(sample, STAGE, "caption_too_short",
                                    f"{len(sample.caption)} chars < {cfg.caption.min_chars}")
        if self.boilerplate is not None:
            matched = self.boilerplate.match(sample.caption)
            if matched is not None:
                return Rejection.of(sample, STAGE, "caption_boilerplate", matched)
        if cfg.image.enabled:
            return self._header_rules(sample)
        return sample

    def _header_rules(self, sample: Sample) -> Outcome:
        rules = self.config.image
        header = read_header(sample.image)
        if not isinstance(header, ImageHeader):
            return Rejection.of(sample, STAGE, header.reason, header.detail)
        sample.annotations.update(image_format=header.format, image_width=header.width, image_height=header.height)
        if header.format not in rules.allowed_formats:
            return Rejection.of(sample, STAGE, "image_format_not_allowed",
                                f"{header.format} not in {list(rules.allowed_formats)}")
        if problem := size_problem(header.width, header.height, min_side=None, max_aspect=None,
                                   max_pixels=rules.max_pixels):
            return Rejection.of(sample, STAGE, problem.reason, problem.detail)
        if problem := truncation_problem(sample.image, header):
            return Rejection.of(sample, STAGE, problem.reason, problem.detail)
        width, height = header.width, header.height
        if rules.use_original_size:
            width, height, ignored = original_size(sample.meta, header, rules.min_download_side)
            if ignored:  # both sizes recorded: the decoded one decided
                sample.annotations["image_claimed_size_ignored"] = ignored
            elif (width, height) != (header.width, header.height):  # the original decided: say which
                sample.annotations.update(image_judged_width=width, image_judged_height=height)
        if problem := size_problem(width, height, min_side=rules.min_side, max_aspect=rules.max_aspect,
                                   max_pixels=None):
            return Rejection.of(sample, STAGE, problem.reason, problem.detail)
        return sample

    def _decode_rule(self, outcomes: list[Outcome]) -> None:
        if not (self.config.image.enabled and self.config.image.decode):
            return
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, Sample):
                problem = decode_problem(outcome.image, outcome.annotations["image_format"])
                if problem:
                    outcomes[i] = Rejection.of(outcome, STAGE, problem.reason, problem.detail)

    # -- model rules (batched over the samples still in play) ------------------------------
    @staticmethod
    def _batched(outcomes: list[Outcome], rule: Callable[[list[Sample]], list[Outcome]]) -> None:
        alive = [i for i, o in enumerate(outcomes) if isinstance(o, Sample)]
        if alive:
            for i, result in zip(alive, rule([outcomes[i] for i in alive])):
                outcomes[i] = result

    def _language_rule(self, samples: list[Sample]) -> list[Outcome]:
        if self.language is None:
            return samples
        rule = self.config.language
        results: list[Outcome] = []
        for sample, guess in zip(samples, self.language.predict([s.caption for s in samples])):
            sample.annotations.update(caption_lang=guess.label, caption_lang_score=round(guess.score, 4))
            if guess.label not in rule.allowed:
                results.append(Rejection.of(sample, STAGE, "language_not_allowed", f"{guess.label} {guess.score:.3f}"))
            elif guess.score < rule.min_score:
                results.append(Rejection.of(sample, STAGE, "language_low_confidence",
                                            f"{guess.label} {guess.score:.3f} < {rule.min_score}"))
            else:
                results.append(sample)
        return results

    def _complexity_rule(self, samples: list[Sample]) -> list[Outcome]:
        if self.complexity is None:
            return samples
        rule = self.config.complexity
        results: list[Outcome] = []
        for sample, found in zip(samples, self.complexity.count(s.caption for s in samples)):
            sample.annotations.update(caption_objects=found.objects, caption_attributes=found.attributes,
                                      caption_actions=found.actions)
            for reason, count, minimum in (
                ("complexity_too_few_objects", found.objects, rule.min_objects),
                ("complexity_too_few_attributes", found.attributes, rule.min_attributes),
                ("complexity_too_few_actions", found.actions, rule.min_actions),
            ):
                if count < minimum:
                    results.append(Rejection.of(sample, STAGE, reason, f"{count} < {minimum}"))
                    break
            else:
                results.append(sample)
        return results
