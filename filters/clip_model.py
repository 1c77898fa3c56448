"""Load an open_clip model from what a recipe names, or fail before the pipeline starts.

Three ways to name weights: an open_clip pretrained tag (downloaded by open_clip from its hub into
its cache), a local checkpoint file, or a custom architecture whose JSON config lives in
`config_dir`, with a local checkpoint. There is no way to ask for random weights: a CLIPScore from
an untrained model is noise that looks like a score, so missing weights are always an error.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from filters.model_files import file_sha256

log = logging.getLogger("vlcurate")


class ClipWeightsError(FileNotFoundError):
    """The named open_clip model or its weights cannot be had; the message says which recipe keys fix it."""


@dataclass(frozen=True)
class ClipSpec:
    """What identifies a loaded model: architecture, weights, where it runs."""

    name: str
    pretrained: str | None
    config_dir: str | None = None
    cache_dir: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    stage: str = "clipscore"  # for error messages: which recipe block to edit


def _fix_hint(spec: ClipSpec) -> str:
    return (f"set {spec.stage}.model.pretrained to a local checkpoint file (open_clip .pt/.bin/.safetensors, "
            f"e.g. open_clip_pytorch_model.bin from the model's hub page, copied to this machine); for an "
            f"architecture open_clip does not know, also set {spec.stage}.model.config_dir to a directory "
            f"holding NAME.json")


def register_configs(spec: ClipSpec) -> None:
    import open_clip

    if spec.config_dir:
        if not os.path.isdir(spec.config_dir):
            raise ClipWeightsError(f"{spec.stage}.model.config_dir {spec.config_dir!r} is not a directory")
        open_clip.add_model_config(spec.config_dir)
    if spec.name not in open_clip.list_models():
        raise ClipWeightsError(
            f"{spec.stage}.model.name {spec.name!r} is not an open_clip architecture "
            f"(known: {', '.join(open_clip.list_models()[:12])}, ...); for a custom one set "
            f"{spec.stage}.model.config_dir to a directory holding {spec.name}.json and "
            f"{spec.stage}.model.pretrained to its checkpoint file")


def resolve_checkpoint(spec: ClipSpec) -> str:
    """A local file holding the weights: the given path, or the tag's file in open_clip's cache."""
    import open_clip

    register_configs(spec)
    if not spec.pretrained:
        raise ClipWeightsError(f"{spec.stage}.model.pretrained is not set: no weights for {spec.name}; "
                               + _fix_hint(spec))
    if os.path.isfile(spec.pretrained):
        return spec.pretrained
    tag_cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(spec.name)
        raise ClipWeightsError(
            f"{spec.stage}.model.pretrained {spec.pretrained!r} is neither a file nor a pretrained tag of "
            f"{spec.name} (tags: {', '.join(tags) or 'none'}); " + _fix_hint(spec))
    host, reachable = _hub_reachable(tag_cfg, spec.cache_dir)
    if not reachable:  # fail in seconds: the hub client retries an unreachable host for about a minute
        raise ClipWeightsError(
            f"the weights of {spec.name}/{spec.pretrained} are not in open_clip's cache and {host} cannot be "
            f"reached from this machine; " + _fix_hint(spec))
    try:
        path = open_clip.download_pretrained(tag_cfg, cache_dir=spec.cache_dir)
    except Exception as err:  # hub unreachable, auth, disk: all mean "no weights here"
        raise ClipWeightsError(
            f"could not download the weights of {spec.name}/{spec.pretrained} ({type(err).__name__}: "
            f"{str(err)[:300]}); where the hub is unreachable, " + _fix_hint(spec)) from err
    if not path or not os.path.isfile(path):
        raise ClipWeightsError(f"open_clip found no weights file for {spec.name}/{spec.pretrained}; "
                               + _fix_hint(spec))
    return path


def _identity(spec: ClipSpec, checkpoint: str) -> dict[str, Any]:
    import open_clip

    path = os.path.abspath(checkpoint)
    return {"name": spec.name, "pretrained": spec.pretrained, "path": path, "sha256": file_sha256(path),
            "device": spec.device, "precision": spec.precision, "open_clip": open_clip.__version__}


def weights_problem(err: Exception, name: str) -> str:
    """Why open_clip could not load a checkpoint, in words (never torch's advice to unpickle it)."""
    if isinstance(err, pickle.UnpicklingError):
        return ("is not a checkpoint of tensors: weights_only loading refuses it (a checkpoint is data, never "
                "unpickled); give a file saved from the model's state_dict")
    if isinstance(err, EOFError):  # torch.load of an empty file; click turned it into a bare "Aborted."
        return "is empty or cut short"
    text = str(err).strip()
    last = text.splitlines()[-1][:300] if text else ""
    if isinstance(err, RuntimeError) and ("key" in last.lower() or "size mismatch" in text):
        return f"does not fit the architecture {name}: {last}"
    return f"cannot be loaded as {name} weights ({type(err).__name__}{': ' + last if last else ''})"


def check_weights(spec: ClipSpec) -> tuple[dict[str, Any], list[str]]:
    """What the driver can know without loading a model anywhere: the weights file (resolved,
    downloaded into the cache for a tag, hashed) and, for a local checkpoint, that its keys and shapes
    fit the architecture, checked on torch's meta device (no memory, no GPU). Returns the identity
    for the manifest and the checks left to the workers."""
    import open_clip

    checkpoint = resolve_checkpoint(spec)
    deferred = []
    if os.path.isfile(spec.pretrained):
        warnings_off = logging.root.manager.disable
        logging.disable(logging.WARNING)  # open_clip warns "initialized randomly" for a model built without weights
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # meta tensors: copying weights into them is a no-op, as wanted
                model = open_clip.create_model(spec.name, device="meta")
                open_clip.load_checkpoint(model, checkpoint, weights_only=True)
        except Exception as err:  # missing/unexpected keys, shapes; not a checkpoint at all (one line each)
            raise ClipWeightsError(f"{spec.stage}.model.pretrained {checkpoint} {weights_problem(err, spec.name)}") \
                from None
        finally:
            logging.disable(warnings_off)
    else:
        deferred.append(f"{spec.stage}: {spec.name}/{spec.pretrained} is loaded from open_clip's cache on the workers")
    if spec.device != "cpu":
        deferred.append(f"{spec.stage}: building {spec.name} on {spec.device} happens on the workers "
                        "(the driver builds no model on a device)")
    return _identity(spec, checkpoint), deferred


def _hub_reachable(tag_cfg: dict[str, Any], cache_dir: str | None, timeout: float = 5.0) -> tuple[str, bool]:
    """(host, whether weights could come from it): True at once when the file is cached already."""
    import socket
    from urllib.parse import urlsplit

    if tag_cfg.get("hf_hub"):
        try:
            from huggingface_hub import constants, try_to_load_from_cache

            repo_id = tag_cfg["hf_hub"].rstrip("/")
            for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
                if isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache_dir), str):
                    return repo_id, True
            endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
        except ImportError:
            endpoint = "https://huggingface.co"
    else:
        endpoint = tag_cfg.get("url", "")
        cached = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(urlsplit(endpoint).path))
        if os.path.isfile(cached):  # open_clip's cache for URL weights
            return endpoint, True
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return host, True
    except OSError:
        return host, False


@dataclass
class LoadedClip:
    model: Any
    preprocess: Any
    tokenizer: Any
    identity: dict[str, Any]


def _file_stamps(spec: ClipSpec) -> tuple:
    """(path, size, mtime) of the local files a spec reads: a checkpoint rewritten in place (a
    filtering CLIP retrained into the same path) is a new model, not the cached old one."""
    paths = [spec.pretrained] if spec.pretrained and os.path.isfile(spec.pretrained) else []
    if spec.config_dir and os.path.isdir(spec.config_dir):
        paths += sorted(str(p) for p in Path(spec.config_dir).glob("*.json"))
    stamps = []
    for path in paths:
        stat = os.stat(path)
        stamps.append((path, stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


def load_clip(spec: ClipSpec) -> LoadedClip:
    """One model per process, spec and file contents: stages that name the same model share it."""
    return _load_clip(spec, _file_stamps(spec))


@lru_cache(maxsize=4)
def _load_clip(spec: ClipSpec, _stamps: tuple) -> LoadedClip:
    import open_clip

    checkpoint = resolve_checkpoint(spec)
    # A tag is passed as the tag so its preprocessing settings (mean/std, resize) apply; the
    # file is already in the cache. weights_only: checkpoints are data, never code.
    pretrained = spec.pretrained if not os.path.isfile(spec.pretrained) else checkpoint
    model, _, preprocess = open_clip.create_model_and_transforms(
        spec.name, pretrained=pretrained, device=spec.device, precision=spec.precision,
        cache_dir=spec.cache_dir, weights_only=True)
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.name, cache_dir=spec.cache_dir)
    identity = _identity(spec, checkpoint)
    log.info("loaded open_clip %s (%s) on %s", spec.name, spec.pretrained, spec.device)
    return LoadedClip(model, preprocess, tokenizer, identity)
