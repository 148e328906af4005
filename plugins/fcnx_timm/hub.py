"""Pretrained timm weights: from the local cache when there, else downloaded, failing fast without network.

Without network access, timm's download (huggingface_hub) retries with back-off for about 50 s
before it gives up. Here a file already in the cache is loaded directly (no network at all), and
otherwise one quick request to the hub decides: unreachable is a one-line error at once,
reachable runs timm's own download. ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` are respected.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fcnx.plugin import FcnxError

#: seconds the reachability probe waits for the hub
PROBE_TIMEOUT = 5.0
#: what timm fetches from a Hugging Face repository, in its order
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def create_pretrained(tag: str) -> Any:
    """``timm.create_model(tag, pretrained=True)``, with the cached file when there is one, else a quick probe first."""
    import timm
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(tag)
    cached = None if cfg is None else _cached_file(cfg)
    source = None if cfg is None or cached is not None else _source(cfg)
    if source is not None:
        hub, url, hints = source
        problem = _offline_reason(hub) or _probe(url)
        if problem is not None:
            raise FcnxError(
                f"cannot download the pretrained weights {tag!r} from {hub} ({problem}): pass a "
                f"local weight file with --weights NET=FILE, or {hints}"
            )
    try:
        if cached is not None:
            return timm.create_model(tag, pretrained=True, pretrained_cfg_overlay={"file": cached})
        return timm.create_model(tag, pretrained=True)
    except Exception as exc:
        if cached is not None:
            raise FcnxError(
                f"cannot load the cached pretrained weights {tag!r} ({type(exc).__name__}); remove the "
                f"file to download it again, or pass a checkpoint file with --weights NET=FILE",
                cached,
            ) from None
        raise FcnxError(
            f"cannot fetch pretrained weights {tag!r} ({type(exc).__name__}); without network "
            f"access pass a checkpoint file with --weights NET=FILE"
        ) from None


def _hf(cfg: Any) -> tuple[str, str | None, tuple[str, ...]] | None:
    """``(repository, revision, files)`` when timm takes ``cfg``'s weights from the Hugging Face hub."""
    from timm.models._hub import has_hf_hub

    if not cfg.hf_hub_id or not has_hf_hub():
        return None
    repo, _, revision = cfg.hf_hub_id.partition("@")
    return repo, revision or None, (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_WEIGHT_FILES


def _cached_file(cfg: Any) -> str | None:
    """The weight file of ``cfg`` in the Hugging Face or torch hub cache, or ``None``."""
    hf = _hf(cfg)
    if hf is not None:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, revision, files = hf
        for name in files:
            found = try_to_load_from_cache(repo, name, cache_dir=constants.HF_HUB_CACHE, revision=revision)
            if isinstance(found, str):
                return found
        return None
    if cfg.url:
        import torch.hub

        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urllib.parse.urlparse(cfg.url).path))
        return path if os.path.isfile(path) else None
    return None


def _source(cfg: Any) -> tuple[str, str, str] | None:
    """``(hub, url to probe, hint)`` of where timm would download ``cfg``'s weights from."""
    hf = _hf(cfg)
    if hf is not None:
        from huggingface_hub import constants, hf_hub_url

        repo, revision, files = hf
        return (
            constants.ENDPOINT,
            hf_hub_url(repo, files[0], revision=revision, endpoint=constants.ENDPOINT),
            f"set HF_ENDPOINT to a reachable mirror, or download them to the cache ({constants.HF_HUB_CACHE}) first",
        )
    if cfg.url:
        import torch.hub

        parts = urllib.parse.urlparse(cfg.url)
        return (
            f"{parts.scheme}://{parts.netloc}",
            cfg.url,
            f"download {cfg.url} to {os.path.join(torch.hub.get_dir(), 'checkpoints')} first",
        )
    return None


def _offline_reason(hub: str) -> str | None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE and hub == constants.ENDPOINT:
        return "HF_HUB_OFFLINE is set and they are not in the cache"
    return None


def _probe(url: str) -> str | None:
    """``None`` when the server of ``url`` answers at all (any HTTP status), else why not, in a few words."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "fcnx"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT):
            return None
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"no connection: {reason}".splitlines()[0][:200]
