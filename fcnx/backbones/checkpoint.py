"""fcnx checkpoints: tensors plus the metadata that makes ``--weights FILE`` enough on its own.

The preferred format is safetensors, whose header carries the metadata under the key ``fcnx``
as JSON. ``.pt``/``.pth`` files are read with ``torch.load(weights_only=True)`` only (never a
full unpickle) and take their metadata from a JSON sidecar ``<file>.json``.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fcnx.errors import WeightsError
from fcnx.io.files import atomic_write, kind_of

FORMAT_VERSION = 1
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
#: the largest ``input_size`` metadata may give (a kernel of this side already needs gigabytes per image)
MAX_INPUT_SIZE = 4096
#: the widest hidden layer ``head`` may give
MAX_HEAD_WIDTH = 1 << 16


@dataclass
class CheckpointMeta:
    """What a checkpoint says about itself."""

    arch: str
    classes: list[str]
    input_size: int
    head: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, text: str, path: Path) -> CheckpointMeta:
        """Parse and validate metadata; anything odd is a :class:`WeightsError` naming ``path`` and the field."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise WeightsError(f"bad fcnx metadata: not JSON ({_reason(exc)})", path) from None
        if not isinstance(data, dict):
            raise WeightsError(f"bad fcnx metadata: expected a JSON object, got {type(data).__name__}", path)
        problem = _meta_problem(data)
        if problem:
            raise WeightsError(f"bad fcnx metadata: {problem}", path)
        return cls(
            arch=data["arch"],
            classes=list(data["classes"]),
            input_size=data["input_size"],
            head=list(data.get("head", [])),
            extra=dict(data.get("extra", {})),
        )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _meta_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with parsed metadata, naming the field, or ``None``."""
    version = data.get("format_version", FORMAT_VERSION)
    if not _is_int(version) or version < 1:
        return f"field 'format_version' must be a whole number >= 1, got {version!r}"
    if version > FORMAT_VERSION:
        return f"field 'format_version' is {version}: written by a newer fcnx (this one reads {FORMAT_VERSION})"
    for key in ("arch", "classes", "input_size"):
        if key not in data:
            return f"field {key!r} is missing"
    if not isinstance(data["arch"], str) or not data["arch"].strip():
        return f"field 'arch' must be a backbone name, got {data['arch']!r}"
    classes = data["classes"]
    if not isinstance(classes, list):
        return f"field 'classes' must be a list of class names, got {type(classes).__name__} {_short(classes)}"
    if not classes:
        return "field 'classes' is empty"
    for number, name in enumerate(classes):
        if not isinstance(name, str):
            return f"field 'classes': entry {number} is {type(name).__name__} {_short(name)}, not a name"
        if not name.strip():
            return f"field 'classes': entry {number} is an empty name"
        if not name.isprintable():
            return f"field 'classes': entry {number} ({name!r}) holds control characters"
    if len(set(classes)) != len(classes):
        twice = next(name for k, name in enumerate(classes) if name in classes[:k])
        return f"field 'classes' names {twice!r} more than once"
    size = data["input_size"]
    if not _is_int(size) or not 1 <= size <= MAX_INPUT_SIZE:
        return f"field 'input_size' must be a whole number of pixels in [1, {MAX_INPUT_SIZE}], got {_short(size)}"
    head = data.get("head", [])
    if not isinstance(head, list) or not all(_is_int(h) and 1 <= h <= MAX_HEAD_WIDTH for h in head):
        return f"field 'head' must be a list of layer widths in [1, {MAX_HEAD_WIDTH}], got {_short(head)}"
    if not isinstance(data.get("extra", {}), dict):
        return f"field 'extra' must be a JSON object, got {_short(data['extra'])}"
    return None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sidecar_path(path: Path) -> Path:
    """Where the JSON metadata of a pickle-format checkpoint lives."""
    return path.with_name(path.name + ".json")


def check_weight_file(path: Path) -> None:
    """A one-line :class:`WeightsError` unless ``path`` is a regular file (or a link to one): a named pipe
    is never opened (that would wait for a writer for ever), nor a folder or a device."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise WeightsError("no such weight file", path) from None
    except OSError as exc:
        raise WeightsError(f"cannot read the weight file ({_reason(exc)})", path) from None
    if not stat.S_ISREG(mode):
        raise WeightsError(f"is {kind_of(mode)}, not a regular file: not opened as weights", path)


def read_meta(path: str | os.PathLike[str]) -> CheckpointMeta | None:
    """The checkpoint's metadata, or ``None`` if it has none."""
    path = Path(path)
    check_weight_file(path)
    if path.suffix in SAFETENSORS_SUFFIXES:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                text = (f.metadata() or {}).get("fcnx")
        except Exception as exc:
            raise WeightsError(f"not a readable safetensors file ({exc})", path) from None
        return CheckpointMeta.from_json(text, path) if text else None
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        try:
            text = sidecar.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WeightsError(f"cannot read the metadata ({_reason(exc)})", sidecar) from None
        return CheckpointMeta.from_json(text, sidecar)
    return None


def read_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """All tensors of a checkpoint as a flat ``name -> torch.Tensor`` dict, loaded on the CPU."""
    import torch

    path = Path(path)
    check_weight_file(path)
    if path.suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise WeightsError(f"not a readable safetensors file ({exc})", path) from None
    if path.suffix in PICKLE_SUFFIXES:
        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(
                f"refused or unreadable torch file (loaded with weights_only=True): {reason}", path
            ) from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightsError("expected a state dict of tensors", path)
        return state
    raise WeightsError(f"unknown weight format {path.suffix!r} (use .safetensors, .pt or .pth)", path)


def save(path: str | os.PathLike[str], tensors: dict[str, Any], meta: CheckpointMeta) -> Path:
    """Write a safetensors checkpoint with metadata atomically (temp file, then rename)."""
    from safetensors.torch import save as encode

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = encode(contiguous, metadata={"fcnx": meta.to_json()})
    return atomic_write(Path(path), lambda f: f.write(data))


def load_state_strict(module: Any, tensors: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Load ``tensors`` into a torch ``module``; any missing, unexpected or misshapen tensor is an error, and so is
    a tensor of integers, booleans or complex numbers for a floating-point weight."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"missing tensor {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        if unexpected:
            parts.append(
                f"unexpected tensor {unexpected[0]!r}"
                + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            )
        raise WeightsError("does not fit this architecture: " + ", ".join(parts), path)
    for key, value in own.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"tensor {key!r} has shape {tuple(tensors[key].shape)}, the architecture expects {tuple(value.shape)}",
                path,
            )
        if value.is_floating_point() and not tensors[key].is_floating_point():  # torch would cast them silently
            dtype = str(tensors[key].dtype).removeprefix("torch.")
            raise WeightsError(f"tensor {key!r} holds {dtype} values, the architecture expects floating point", path)
    module.load_state_dict(tensors, strict=True)
