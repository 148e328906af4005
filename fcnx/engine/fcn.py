"""A loaded FCN: a backbone's classifier with weights, convolutionalized, ready on a device."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fcnx.backbones import checkpoint
from fcnx.backbones.registry import get_backbone
from fcnx.backbones.spec import BackboneSpec
from fcnx.errors import FcnxError, UsageError, WeightsError


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index order (first WordNet synonym; duplicates carry their synset)."""
    text = resources.files("fcnx").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


@dataclass
class FCN:
    """A convolutionalized network.

    Calling it maps a float ``N x 3 x H x W`` batch of RGB pixels in ``[0, 255]`` (on ``device``)
    to ``N x len(classes) x h x w`` logits, where ``(h, w) = spec.heatmap_shape(H, W, kernel)``.
    On a ``kernel x kernel`` input it returns exactly the classifier's logits (``h = w = 1``).
    """

    spec: BackboneSpec
    classes: list[str]
    kernel: int
    pool: int
    net: Any
    device: Any
    classifier: Any

    def __post_init__(self) -> None:
        import torch

        pre = self.spec.preprocess
        mean = torch.tensor(pre.mean, dtype=torch.float32) * 255.0
        std = torch.tensor(pre.std, dtype=torch.float32) * 255.0
        self._order = [2, 1, 0] if pre.channel_order == "BGR" else [0, 1, 2]
        self._scale = (1.0 / std)[self._order].view(1, 3, 1, 1).to(self.device)
        self._shift = (-mean / std)[self._order].view(1, 3, 1, 1).to(self.device)

    @property
    def name(self) -> str:
        return self.spec.name

    def normalize(self, images: Any) -> Any:
        """Pixels in ``[0, 255]`` RGB to the backbone's input convention."""
        if self._order != [0, 1, 2]:
            images = images[:, self._order]
        return images * self._scale + self._shift

    def __call__(self, images: Any) -> Any:
        return self.net(self.normalize(images))

    @property
    def class_maps(self) -> bool:
        """Whether the net also gives class maps (``forward(x, cells=True)``, :mod:`fcnx.backbones.convolutionalize`)."""
        return bool(getattr(self.net, "class_maps", False))

    @property
    def class_map_origin(self) -> float:
        """Where the first class-map cell's centre lies in the input, in pixels along each axis: cell ``u``'s
        is at ``stride * u +`` this, so that window ``i``'s centre is the mean of its ``pool`` cells'."""
        return (self.kernel - self.spec.stride * (int(getattr(self.net, "pool", self.pool)) - 1)) / 2

    def with_cells(self, images: Any) -> tuple[Any, Any]:
        """``(logits, class maps)`` of one forward pass (nets whose :attr:`class_maps` is true)."""
        return self.net(self.normalize(images), cells=True)


#: how ``--weights`` names a checkpoint on the Hugging Face Hub (timm's prefix): ``hf-hub:user/repo[@revision]``
HUB_PREFIX = "hf-hub:"
#: the checkpoint files looked for in a Hub repository, in order: fcnx train's, then timm's
HUB_FILES = ("best.safetensors", "model.safetensors", "pytorch_model.bin")


def _hub_download(weights: str, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` in the Hub repository ``weights`` names: from the cache, else downloaded; ``None`` if none."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo, _, revision = weights.removeprefix(HUB_PREFIX).partition("@")
    if not repo.strip("/"):
        raise UsageError(f"{weights!r}: expected {HUB_PREFIX}user/repo[@revision]")
    for name in names:
        found = try_to_load_from_cache(repo, name, revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    if constants.HF_HUB_OFFLINE:
        return None
    problem = _unreachable()  # one quick request: huggingface_hub itself retries for about 25 s per file
    for name in names if problem is None else ():
        try:
            return Path(hf_hub_download(repo, name, revision=revision or None))
        except LocalEntryNotFoundError as exc:  # the Hub stopped answering (a subclass of the next)
            problem = type(exc).__name__
            break
        except EntryNotFoundError:
            continue
        except Exception as exc:
            problem = type(exc).__name__
            break
    if problem is not None:
        raise FcnxError(
            f"cannot fetch {weights} from {constants.ENDPOINT} ({problem}); without network access put it in "
            f"the Hugging Face cache ({constants.HF_HUB_CACHE}) first, or pass a checkpoint file"
        )
    return None


def _unreachable() -> str | None:
    """``None`` when the Hub's server answers one request at all, else why not, in a few words."""
    from huggingface_hub import constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=5)
    except Exception as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return None


def hub_file(weights: str) -> Path:
    """The checkpoint of ``hf-hub:user/repo[@revision]`` (one of :data:`HUB_FILES`), with huggingface_hub's own cache."""
    from huggingface_hub import constants

    path = _hub_download(weights, HUB_FILES)
    if path is None:
        where = f"the Hugging Face cache ({constants.HF_HUB_CACHE}, HF_HUB_OFFLINE is set)"
        raise WeightsError(
            f"none of {', '.join(HUB_FILES)} in {where if constants.HF_HUB_OFFLINE else 'the repository'}", weights
        )
    return path


def hub_classes(weights: str) -> list[str] | None:
    """Class names of a timm checkpoint on the Hub: its ``config.json``'s ``label_names``, else ImageNet's for 1000."""
    import json

    path = _hub_download(weights, ("config.json",))
    if path is None:
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"unreadable config.json ({exc})", path) from None
    names = config.get("label_names") or config.get("pretrained_cfg", {}).get("label_names")
    if isinstance(names, list) and names:
        return [str(name) for name in names]
    return list(imagenet_classes()) if config.get("num_classes") == 1000 else None


def _looks_like_tag(spec: BackboneSpec, weights: str) -> bool:
    return weights in spec.pretrained or weights == "pretrained"


def weight_file(spec: BackboneSpec, weights: str | Path | None) -> Path | None:
    """The checkpoint file ``weights`` stands for: a path, a pretrained tag the plugin ships as a file, or a
    Hugging Face Hub repository (``hf-hub:user/repo``, :func:`hub_file`).

    ``None`` for no weights or a tag that ``build`` downloads from a hub.
    """
    if weights is None:
        return None
    if str(weights).startswith(HUB_PREFIX):
        return hub_file(str(weights))
    if _looks_like_tag(spec, str(weights)):
        if not spec.pretrained or spec.shipped_weights is None:
            return None
        return spec.shipped_weights(spec.pretrained[0] if str(weights) == "pretrained" else str(weights))
    return Path(weights)


def trained_size(net: str, weights: str | Path | None = "pretrained") -> int | None:
    """The input size ``net``'s checkpoint (a file or a shipped tag) was trained at, or ``None`` when unknown."""
    path = weight_file(get_backbone(net), weights)
    if path is None or not path.is_file():
        return None
    meta = checkpoint.read_meta(path)
    return meta.input_size if meta is not None else None


@dataclass
class _Weights:
    """What ``load_fcn``'s weights say: the file or pretrained tag, the classes, the head, the trained size."""

    path: Path | None
    pretrained: str | None
    classes: list[str]
    head: tuple[int, ...]
    input_size: int
    #: the checkpoint's input size (None: no fcnx checkpoint)
    trained: int | None = None


def _read_weights(
    spec: BackboneSpec, weights: str | Path | None, classes: list[str] | None, head: tuple[int, ...]
) -> _Weights:
    """Resolve ``weights`` to a file or a pretrained tag and read its classes, head and input size."""
    missing = spec.missing_requirements()
    if missing:
        raise UsageError(
            f"backbone {spec.name!r} needs {', '.join(missing)}: {spec.install_hint or 'pip install ' + ' '.join(missing)}"
        )
    pretrained: str | None = None
    input_size = spec.default_size
    trained: int | None = None
    path = weight_file(spec, weights)
    if path is None and weights is not None:
        if not spec.pretrained:
            raise UsageError(f"backbone {spec.name!r} has no pretrained weights; pass a weight file")
        pretrained = spec.pretrained[0] if str(weights) == "pretrained" else str(weights)
        classes = list(classes) if classes is not None else list(imagenet_classes())
    elif path is not None:
        meta = checkpoint.read_meta(path)
        if meta is not None:
            if meta.arch != spec.name:
                raise WeightsError(f"checkpoint is for backbone {meta.arch!r}, not {spec.name!r}", path)
            if classes is not None and len(classes) != len(meta.classes):
                raise WeightsError(f"checkpoint has {len(meta.classes)} classes, {len(classes)} were given", path)
            classes = list(classes) if classes is not None else meta.classes
            head = tuple(meta.head)
            input_size = trained = meta.input_size
        elif classes is None and str(weights).startswith(HUB_PREFIX):
            classes = hub_classes(str(weights))
        if meta is None and classes is None:
            if str(weights).startswith(HUB_PREFIX):
                raise WeightsError(
                    "checkpoint has no fcnx metadata and the repository's config.json no label_names", weights
                )
            raise WeightsError(
                "checkpoint has no fcnx metadata; give the class names (a sidecar <file>.json or --classes)", path
            )
    if classes is None:
        raise UsageError(f"backbone {spec.name!r} needs class names or weights")
    return _Weights(path, pretrained, list(classes), tuple(head), input_size, trained)


def _kernel(spec: BackboneSpec, source: _Weights, kernel: int | None) -> int:
    """The input side to convolutionalize for: ``kernel``, else the trained size, within the backbone's range."""
    trained = source.trained
    if trained is not None and trained < spec.w_min(1) and (kernel or trained) == trained:
        raise WeightsError(
            f"trained at {trained} pixels, under {spec.name}'s smallest input side {spec.w_min(1)}: give a kernel",
            source.path,
        )
    kernel = kernel or source.input_size
    if kernel < spec.w_min(1):
        raise UsageError(f"kernel {kernel} is too small for {spec.name}: its smallest input side is {spec.w_min(1)}")
    if kernel > checkpoint.MAX_INPUT_SIZE:
        raise UsageError(
            f"kernel {kernel} is too large for {spec.name}: at most {checkpoint.MAX_INPUT_SIZE} pixels a side"
        )
    return kernel


def _build(spec: BackboneSpec, source: _Weights, kernel: int, device: Any) -> FCN:
    """Build the classifier, load its weights, convolutionalize it and put it on ``device``."""
    import torch

    pool = spec.pool_size(kernel)
    classifier = spec.build(len(source.classes), source.head, source.pretrained)
    if source.path is not None:
        spec.load_weights(classifier, source.path)
    dev = torch.device(device) if isinstance(device, str) else device
    net = spec.convolutionalize(classifier, pool)
    if isinstance(net, torch.nn.Module):
        from fcnx.backbones.convolutionalize import FoldedFCN, PooledFCN, pool_the_cells

        net = net.to(dev).eval()
        if isinstance(net, (PooledFCN, FoldedFCN)):
            side = kernel + 2 * spec.stride  # three windows a side
            pool_the_cells(net, torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(dev))
    return FCN(spec=spec, classes=source.classes, kernel=kernel, pool=pool, net=net, device=dev, classifier=classifier)


def load_fcn(
    backbone: str | BackboneSpec,
    weights: str | Path | None = None,
    *,
    classes: list[str] | None = None,
    kernel: int | None = None,
    device: Any = "cpu",
    head: tuple[int, ...] = (),
) -> FCN:
    """Build ``backbone``, load ``weights`` and convolutionalize it for input side ``kernel``.

    ``weights`` is an fcnx checkpoint file (its metadata gives classes, head and input size), one
    of the backbone's pretrained tags (``"pretrained"`` picks the first: a checkpoint the plugin
    ships, see :attr:`BackboneSpec.shipped_weights`, else a hub download with ImageNet-1k classes),
    or ``None`` for a random initialisation with ``classes``. ``kernel`` defaults to the
    checkpoint's input size, else the backbone's default size.
    """
    spec = get_backbone(backbone) if isinstance(backbone, str) else backbone
    source = _read_weights(spec, weights, classes, head)
    return _build(spec, source, _kernel(spec, source, kernel), device)
