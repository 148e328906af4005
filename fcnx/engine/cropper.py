"""The crop engine: each image's pyramid through the ensemble, batched, and the selection on top.

Library use::

    from fcnx.engine.cropper import Cropper

    cropper = Cropper.from_nets(["inception_v3", "xception"],
                                {"inception_v3": "iv3.safetensors", "xception": "xc.safetensors"})
    result = cropper.crop_image("photo.jpg", categories=["pizza"])
    box = result.boxes[0]          # box.x1, box.y1, box.x2, box.y2, box.votes, box.found, ...

    for result in cropper.crop_items(fcnx.io.discovery.discover(["photos/"])):   # many images, batched
        ...                        # a CropResult, or a CropFailure for a file that could not be read

The category of an image is, in order: the ``categories`` given (one box per category), the
image's own label (a dataset's folder or meta files), else the ensemble's top class at its most
confident cell (:func:`fcnx.method.selection.top_category`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from fcnx.engine.decode import Decoded, Files, identity, min_decode_side
from fcnx.engine.devices import default_batch_size
from fcnx.engine.ensemble import Ensemble, NetCells, NonFiniteOutput, load_ensemble
from fcnx.engine.options import CropOptions
from fcnx.engine.results import Box, CropFailure, CropResult
from fcnx.errors import FcnxError, UsageError, did_you_mean
from fcnx.io.decoding import Source, load_rgb, read_rgb, to_rgb
from fcnx.io.discovery import ImageItem
from fcnx.io.processes import worker_init
from fcnx.method import boxes, geometry
from fcnx.method.evidence import ClassMap
from fcnx.method.selection import Choice, Level, Selector, select, top_category

#: largest resized image (pixels) a pyramid level may have; levels beyond it are left out
MAX_LEVEL_PIXELS = 16_000_000


#: levels per category recomputed in fp32 after a reduced-precision pass (the best ones by the selection's key)
RECHECK = 2
#: how many of the ensemble's top classes of the whole image each result names (:attr:`CropResult.guesses`)
GUESSES = 5


@dataclass
class _Prepared:
    item: ImageItem
    pixels: torch.Tensor  # 3 x h0 x w0 uint8 (maybe decoded at reduced size)
    size: tuple[int, int]
    levels: list[tuple[float, tuple[int, int]]]
    categories: list[int] | None
    source: Source | None = None

    @property
    def key(self) -> tuple:
        return self.size, tuple(self.pixels.shape), len(self.categories or ())


class Cropper:
    """An ensemble with the pyramid and selection options (:class:`~fcnx.engine.options.CropOptions`): crops one
    image or streams many.

    The options it reads: ``step``/``max_scale``: the pyramid starts where the short side equals the kernel
    and grows by ``step`` up to ``max_scale`` times that start; ``max_scale="auto"``: until the window is about
    10 % of the short side, within the decoded image's resolution and a pixel budget
    (:func:`~fcnx.method.geometry.auto_scales`). ``selection``: ``"paper"`` or ``"votes-first"``
    (:mod:`fcnx.method.selection`); ``early_stop`` stops an image's pyramid at the first level where
    every net votes for each of its categories. ``categories``: names or indices for every image
    (default: each image's label, else the ensemble's top class). ``batch_size`` images of one
    size go through the nets together (default 8 on an accelerator, 1 on the CPU, where larger
    batches are no faster: the convolutions of one large image already fill the cores). ``box``: the rule of
    :data:`fcnx.method.boxes.RULES` giving each :class:`Box`'s ``x, y, w, h``: the whole object
    fitted to the image's pixels (``"fitted-object"``, the default) or not (``"object"``; both make the pyramid
    gain the whole-image view), the tight box (``"tight"``), the paper's kernel window (``"square"``) or the tight
    box fitted to the image's pixels (``"fitted"``); the fitting rules need OpenCV. The window and the tight box
    are always given, the fitted box (``fitted``) only when it is the one asked for.
    ``instances``: up to this many boxes per category (:func:`fcnx.method.boxes.instances`); ``heatmaps`` or
    ``heatmaps_npy``: the boxes keep their heatmaps. ``fields`` are options given one by one (over ``options``).

    ``workers`` processes decode images ahead of the nets (:meth:`crop_items`).
    """

    def __init__(
        self, ensemble: Ensemble, options: CropOptions | None = None, *, workers: int = 0, **fields: Any
    ) -> None:
        options = options or CropOptions()
        self.options = dataclasses.replace(options, **fields) if fields else options
        self.ensemble = ensemble
        #: images of one size run together (:attr:`CropOptions.batch_size`, by default :func:`default_batch_size`)
        self.batch_size = self.options.batch_size or default_batch_size(ensemble.device)
        self.workers = workers
        self.rule = boxes.RULES[self.options.box]
        #: after a reduced-precision pass, the best levels per category recomputed in fp32 (0: none)
        self.recheck = RECHECK
        given = self.options.categories
        self.categories = [self.category_index(c) for c in given] if given else None
        if self.categories is not None and len(set(self.categories)) != len(self.categories):
            raise UsageError("a category was given twice")

    @classmethod
    def from_options(cls, options: CropOptions, device: Any = "auto", *, workers: int = 0) -> Cropper:
        """Load ``options``' nets on ``device`` (:func:`fcnx.engine.ensemble.load_ensemble`) into a cropper."""
        o = options
        ensemble = load_ensemble(
            o.nets,
            o.weights,
            kernel=o.kernel,
            device=device,
            half=o.half,
            compile=o.compile,
            backend=o.backend,
            precision=o.precision,
        )
        return cls(ensemble, options, workers=workers)

    @classmethod
    def from_nets(
        cls,
        nets: Sequence[str],
        weights: Mapping[str, str | Path] | None = None,
        *,
        device: Any = "auto",
        workers: int = 0,
        **fields: Any,
    ) -> Cropper:
        """Load ``nets`` with ``weights`` and the options ``fields`` (:class:`~fcnx.engine.options.CropOptions`)."""
        return cls.from_options(CropOptions(nets=nets, weights=dict(weights or {}), **fields), device, workers=workers)

    @property
    def classes(self) -> list[str]:
        return self.ensemble.classes

    def category_index(self, category: str | int) -> int:
        """The class index of a category given by name or by index (``"3"`` counts as an index, ``"٣"`` as a name)."""
        classes = self.classes
        if isinstance(category, str) and category in classes:
            return classes.index(category)
        if isinstance(category, int) or re.fullmatch(r"\s*-?[0-9]+\s*", category, re.ASCII):
            try:
                index = int(category)
            except ValueError:  # over Python's 4300 digits
                digits = str(category).strip()
                shown = f"{digits[:12]}... ({len(digits)} digits)"
            else:
                if 0 <= index < len(classes):
                    return index
                shown = str(index)
            raise UsageError(
                f"category index {shown} is out of range: the nets have {len(classes)} classes (0-{len(classes) - 1})"
            )
        named = [c for c in classes if _QUALIFIER.sub("", c).casefold() == str(category).strip().casefold()]
        raise UsageError(
            f"unknown category {category!r}{did_you_mean(str(category), classes, first=named)}; "
            f"the nets' classes are {_preview(classes)}"
        )

    # ------------------------------------------------------------------ one image

    def crop_image(
        self,
        image: str | Path | Any,
        categories: Sequence[str | int] | None = None,
        *,
        label: str | None = None,
    ) -> CropResult:
        """Boxes for one image: a file path, a PIL image (turned upright by its EXIF) or ``H x W x 3`` uint8 array.

        ``categories`` overrides the cropper's; ``label`` is the image's own label. Raises
        :class:`~fcnx.errors.FcnxError` for an unreadable image.
        """
        if isinstance(image, (str, Path)):
            path = Path(image)
            decoded = read_rgb(path, self.min_side)
            pixels, size, source = decoded.pixels, decoded.size, decoded.source
            item = ImageItem(path, PurePosixPath(path.name), label)
        else:
            from PIL import Image, ImageOps

            if isinstance(image, Image.Image):
                array = to_rgb(ImageOps.exif_transpose(image))
            else:
                array = np.asarray(image)
                if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
                    raise UsageError(f"expected an H x W x 3 uint8 array, got {array.dtype} {array.shape}")
            pixels, size, source = array, (int(array.shape[0]), int(array.shape[1])), None
            item = ImageItem(Path("<array>"), PurePosixPath("image.png"), label)
        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).contiguous()
        wanted = [self.category_index(c) for c in categories] if categories else self._categories_of(item)
        prepared = self._prepare(item, tensor, size, wanted)
        prepared.source = source
        try:
            return self._run_batch([prepared])[0]
        except NonFiniteOutput as exc:
            raise FcnxError(str(exc), item.path) from None

    def label_levels(
        self, item: ImageItem, category: str | int
    ) -> tuple[
        tuple[int, int],
        list[tuple[float, tuple[int, int]]],
        list[Level],
        list[tuple[np.ndarray, np.ndarray]],
        list[list[ClassMap | None]],
    ]:
        """Every pyramid level of one image for one category, all nets kept apart (no selection).

        Returns the upright ``(height, width)``, the levels' ``(scale, scaled size)``, their
        :class:`~fcnx.method.selection.Level` (``nets x h x w``), their :func:`~fcnx.method.selection.top_class_map`
        and per net its class map of the category (``None`` for a net without),
        so that any rule or subset of nets can be selected afterwards in numpy:
        :func:`fcnx.method.selection.select` over the levels and :meth:`box_of` give exactly the box
        :meth:`crop_image` gives without ``early_stop``, and :func:`~fcnx.method.selection.top_category`
        over the maps is the category it takes when none is given.
        """
        index = self.category_index(category)
        pixels, size = load_rgb(item.path, self.min_side)
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(self.ensemble.device)
        prepared = self._prepare(item, tensor[0], size, [index])
        levels, maps, class_maps = [], [], []
        for _, scaled in prepared.levels:
            level, top, level_maps = _label_level(self.ensemble, item, size, tensor, scaled, index)
            levels.append(level)
            maps.append(top)
            class_maps.append(level_maps)
        return prepared.size, prepared.levels, levels, maps, class_maps

    def label_view(self, item: ImageItem, category: str | int) -> tuple[Level, list[ClassMap | None]]:
        """The whole-image view (:data:`fcnx.method.boxes.WHOLE_VIEW`) of one image for one category, all nets kept
        apart: what :meth:`label_levels` gives for one level of ``kernel x kernel``, without the top-class map."""
        index = self.category_index(category)
        pixels, size = load_rgb(item.path, self.min_side)
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(self.ensemble.device)
        level, _, class_maps = _label_level(self.ensemble, item, size, tensor, (self.ensemble.kernel,) * 2, index)
        return level, class_maps

    # ------------------------------------------------------------------ many images

    def crop_items(self, items: Iterable[ImageItem]) -> Iterator[CropResult | CropFailure]:
        """Results for ``items`` as they complete (not in input order: images are batched by size).

        Decoding runs in ``workers`` processes; at most a few batches of decoded images wait in
        memory, whatever the number of items. A bad file yields a :class:`CropFailure`.
        """
        items = list(items)
        if not items:
            return
        loader = torch.utils.data.DataLoader(
            Files(items, self.min_side),
            batch_size=None,
            shuffle=False,
            num_workers=self.workers,
            collate_fn=identity,
            pin_memory=self.ensemble.device.type == "cuda",
            prefetch_factor=2 if self.workers else None,
            worker_init_fn=worker_init(),
        )
        yield from self.crop_decoded((items[index], decoded) for index, decoded in loader)

    def crop_decoded(self, decoded: Iterable[tuple[ImageItem, Decoded]]) -> Iterator[CropResult | CropFailure]:
        """Like :meth:`crop_items` for images already decoded (:func:`decode`): batched by size, as they complete."""
        buckets: dict[tuple, list[_Prepared]] = {}
        waiting = 0
        for item, image in decoded:
            if isinstance(image, str):
                yield CropFailure(item, image)
                continue
            pixels, size, source = image
            try:
                prepared = self._prepare(item, pixels, size, self._categories_of(item))
            except FcnxError as exc:
                yield CropFailure(item, str(exc))
                continue
            prepared.source = source
            bucket = buckets.setdefault(prepared.key, [])
            bucket.append(prepared)
            waiting += 1
            if len(bucket) >= self.batch_size:
                waiting -= len(bucket)
                yield from self._run_batch_safely(buckets.pop(prepared.key))
            elif waiting > 2 * self.batch_size:  # many sizes: run the fullest bucket to bound memory
                key = max(buckets, key=lambda k: len(buckets[k]))
                waiting -= len(buckets[key])
                yield from self._run_batch_safely(buckets.pop(key))
        for key in list(buckets):
            yield from self._run_batch_safely(buckets.pop(key))

    def _run_batch_safely(self, batch: list[_Prepared]) -> Iterator[CropResult | CropFailure]:
        try:
            yield from self._run_batch(batch)
        except (torch.OutOfMemoryError, NonFiniteOutput) as exc:  # which image? one at a time says
            if len(batch) == 1:
                item = batch[0].item
                reason = str(exc) if isinstance(exc, NonFiniteOutput) else f"out of memory on {self.ensemble.device}"
                yield CropFailure(
                    item, str(FcnxError(f"{reason} (image {batch[0].size[1]}x{batch[0].size[0]})", item.path))
                )
                return
            half = len(batch) // 2  # retry in smaller batches
            yield from self._run_batch_safely(batch[:half])
            yield from self._run_batch_safely(batch[half:])

    # ------------------------------------------------------------------ internals

    @property
    def min_side(self) -> int:
        """The short side images are decoded to at least (:func:`min_decode_side` of the largest kernel)."""
        return min_decode_side(max(f.kernel for f in self.ensemble.fcns), self.options.max_scale)

    def _categories_of(self, item: ImageItem) -> list[int] | None:
        if self.categories is not None:
            return self.categories
        if item.label is None:
            return None
        if item.label not in self.classes:
            raise FcnxError(f"its label {item.label!r} is not one of the nets' classes", item.path)
        return [self.classes.index(item.label)]

    def _prepare(
        self, item: ImageItem, pixels: torch.Tensor, size: tuple[int, int], categories: list[int] | None
    ) -> _Prepared:
        height, width = size
        kernel = self.ensemble.kernel
        levels = []
        if self.options.max_scale == geometry.AUTO:
            scales = geometry.auto_scales(height, width, kernel, self.options.step, min(pixels.shape[-2:]))
        else:
            scales = geometry.pyramid_scales(height, width, kernel, self.options.step, float(self.options.max_scale))
        for scale in scales:
            scaled = geometry.scaled_size(height, width, scale, kernel)
            if scaled[0] * scaled[1] > MAX_LEVEL_PIXELS:
                break
            levels.append((scale, scaled))
        if not levels:
            scaled = geometry.scaled_size(height, width, kernel / min(height, width), kernel)
            raise FcnxError(
                f"image of {width}x{height} is too elongated: its smallest pyramid level would be "
                f"{scaled[1]}x{scaled[0]} pixels, over the limit of {MAX_LEVEL_PIXELS}",
                item.path,
            )
        return _Prepared(item, pixels, (int(height), int(width)), levels, categories)

    def _run_batch(self, batch: list[_Prepared]) -> list[CropResult]:
        ensemble, device = self.ensemble, self.ensemble.device
        pixels = _to_device([p.pixels for p in batch], device)
        levels = batch[0].levels
        known = batch[0].categories is not None
        early = self.options.early_stop and known
        selectors = [
            [Selector(self.options.selection, early) for _ in range(len(p.categories or ()) or 1)] for p in batch
        ]
        kept: list[list[torch.Tensor]] = [[] for _ in batch]  # no category: all probabilities, kept on the device
        maps: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in batch]
        active = list(range(len(batch)))
        seen: list[list[list[Level]]] = [[[] for _ in s] for s in selectors]  # per image and category
        class_maps: list[list[list[list[ClassMap]]]] = [[[] for _ in s] for s in selectors]  # image, category, level
        kept_cells: list[list[list[NetCells]]] = [[] for _ in batch]  # no category: all classes' class maps
        for _, size in levels:
            subset = pixels if len(active) == len(batch) else pixels[torch.tensor(active, device=device)]
            probs, net_cells = ensemble.outputs_at(subset, size)  # probs: A x nets x classes x h x w
            cells = [c for c in net_cells if c is not None]
            if known:
                wanted = torch.tensor([batch[b].categories for b in active], device=device)  # A x k
                index = wanted[:, None, :, None, None]
                prob = torch.take_along_dim(probs, index, dim=2).cpu().numpy()  # A x nets x k x h x w
                vote = (probs.argmax(dim=2, keepdim=True) == index).cpu().numpy()
                wanted_cells = [
                    (c, torch.take_along_dim(c.logits, wanted[:, :, None, None], 1).cpu().numpy()) for c in cells
                ]
                for a, b in enumerate(active):
                    for k, selector in enumerate(selectors[b]):
                        if not selector.done:
                            seen[b][k].append(Level(prob[a, :, k], vote[a, :, k]))
                            class_maps[b][k].append([_class_map(c, v[a, k]) for c, v in wanted_cells])
                            selector.add(seen[b][k][-1])
                active = [b for b in active if not all(s.done for s in selectors[b])]
                if not active:
                    break
            else:
                top, best = probs.sum(dim=1).max(dim=1)  # A x h x w
                values, classes = top.cpu().numpy(), best.cpu().numpy()
                for a in range(len(batch)):
                    maps[a].append((values[a], classes[a]))
                    kept[a].append(probs[a])
                    kept_cells[a].append([NetCells(c.logits[a], c.size, c.stride, c.origin) for c in cells])
        if not known:
            for b, prepared in enumerate(batch):
                category = top_category(maps[b])
                prepared.categories = [category]
                for probs, cells in zip(kept[b], kept_cells[b]):
                    prob = probs[:, category].cpu().numpy()
                    vote = (probs.argmax(dim=1) == category).cpu().numpy()
                    seen[b][0].append(Level(prob, vote))
                    class_maps[b][0].append([_class_map(c, c.logits[category].cpu().numpy()) for c in cells])
                    selectors[b][0].add(seen[b][0][-1])
        if ensemble.precision != "fp32" and not early and self.recheck:
            selectors = [self._recheck(p, pixels[b : b + 1], seen[b]) for b, p in enumerate(batch)]
        probs, net_cells = self.ensemble.outputs_at(pixels, (self.ensemble.kernel,) * 2)  # the whole image
        guesses = _guesses(probs, self.classes)
        views = _whole_views(batch, probs, net_cells) if self.rule.whole_view else [None] * len(batch)
        return [self._result(*args) for args in zip(batch, selectors, seen, class_maps, views, guesses)]

    def _recheck(self, prepared: _Prepared, pixels: torch.Tensor, seen: list[list[Level]]) -> list[Selector]:
        """Selection again after the ``recheck`` best levels per category are recomputed in fp32."""
        selectors = []
        for category, levels in zip(prepared.categories or [], seen):
            keys = [(c.votes, c.confidence) for c in (select([level], self.options.selection) for level in levels)]
            for index in sorted(range(len(levels)), key=lambda i: keys[i], reverse=True)[: self.recheck]:
                probs = self.ensemble.probabilities_at(pixels, prepared.levels[index][1], exact=True)[0]
                levels[index] = Level(probs[:, category].cpu().numpy(), (probs.argmax(dim=1) == category).cpu().numpy())
            selector = Selector(self.options.selection)
            for level in levels:
                selector.add(level)
            selectors.append(selector)
        return selectors

    def _result(
        self,
        prepared: _Prepared,
        selectors: list[Selector],
        seen: list[list[Level]],
        class_maps: list[list[list[ClassMap]]],
        views: list[tuple[Level, list[ClassMap]]] | None,
        guesses: tuple[tuple[str, float, int], ...],
    ) -> CropResult:
        found_boxes = []
        for k, (category, selector, maps) in enumerate(zip(prepared.categories or [], selectors, class_maps)):
            first = self._found(prepared, selector.result(), seen[k], maps, None if views is None else views[k])
            for instance, (found_box, found) in enumerate(
                boxes.instances(first, self.options.instances, self.rule.function)
            ):
                found_boxes.append(self._box(category, found, found_box, instance + 1, prepared.levels))
        scales = tuple(s for s, _ in prepared.levels)
        return CropResult(prepared.item, prepared.size, scales, tuple(found_boxes), prepared.source, guesses)

    def _box(
        self,
        category: int,
        found: boxes.Found,
        found_box: boxes.Box,
        instance: int,
        levels: Sequence[tuple[float, tuple[int, int]]],
    ) -> Box:
        """The :class:`Box` of one instance of ``category``: ``found_box``, from the peak ``found.choice``."""
        names, choice = self.ensemble.names, found.choice
        scale, scaled = levels[choice.level]
        x, y, w, h = found_box
        window, fit = found.window, found.tight
        fitted = found_box if self.options.box == "fitted" else None
        return Box(
            category=self.classes[category],
            category_index=category,
            found=choice.found,
            votes=choice.votes,
            nets=choice.nets,
            confidence=choice.confidence,
            scale=scale,
            level=choice.level,
            cell=choice.cell,
            scaled_size=scaled,
            x=x,
            y=y,
            w=w,
            h=h,
            net_scores=dict(zip(names, choice.net_scores)),
            net_votes=dict(zip(names, choice.net_votes)),
            levels_examined=choice.levels_examined,
            stopped_early=choice.stopped_early,
            heatmap=choice.heatmap if self.options.keep_heatmaps else None,
            kind=self.options.box,
            window=window,
            tight=fit.box,
            fitted=fitted,
            evidence=fit.object_map() if self.options.keep_heatmaps else None,
            instance=instance,
        )

    def _found(
        self,
        prepared: _Prepared,
        choice: Choice,
        levels: list[Level],
        maps: list[list[ClassMap]],
        view: tuple[Level, list[ClassMap]] | None,
    ) -> boxes.Found:
        """The :class:`~fcnx.method.boxes.Found` of one category: the levels seen, the whole-image view if any,
        the image's pixels if the box rule needs them."""
        sizes = [scaled for _, scaled in prepared.levels[: len(levels)]]
        if view is not None:
            levels, maps, sizes = [*levels, view[0]], [*maps, view[1]], [*sizes, (self.ensemble.kernel,) * 2]
        pyramid = boxes.Pyramid(
            prepared.size, self.ensemble.kernel, self.ensemble.stride, sizes, levels, maps, view is not None
        )
        pixels = prepared.pixels.permute(1, 2, 0).cpu().numpy() if self.rule.pixels else None
        return boxes.Found(pyramid, choice, pixels)


def _whole_views(
    batch: list[_Prepared], probs: torch.Tensor, net_cells: list[NetCells | None]
) -> list[list[tuple[Level, list[ClassMap]]]]:
    """Per image and category, the whole-image view (:data:`fcnx.method.boxes.WHOLE_VIEW`): its level and class maps."""
    cells = [c for c in net_cells if c is not None]
    out = []
    for b, prepared in enumerate(batch):
        top = probs[b].argmax(dim=1)
        out.append(
            [
                (
                    Level(probs[b, :, c].cpu().numpy(), (top == c).cpu().numpy()),
                    [_class_map(x, x.logits[b, c].cpu().numpy()) for x in cells],
                )
                for c in prepared.categories or []
            ]
        )
    return out


def _guesses(probs: torch.Tensor, classes: Sequence[str]) -> list[tuple[tuple[str, float, int], ...]]:
    """Per image of ``probs`` (the whole-image view: ``images x nets x classes x h x w``), the ensemble's
    :data:`GUESSES` top classes: (class, probability averaged over nets and cells, votes: the nets whose top class
    it is), best first."""
    per_net = probs.float().mean(dim=(3, 4))  # images x nets x classes
    mean = per_net.mean(dim=1)
    top = mean.topk(min(GUESSES, mean.shape[1]), dim=1)
    votes = torch.nn.functional.one_hot(per_net.argmax(dim=2), mean.shape[1]).sum(dim=1)  # images x classes
    values, indices, counts = top.values.tolist(), top.indices.tolist(), votes.tolist()
    return [
        tuple((classes[c], float(p), int(n[c])) for p, c in zip(ps, cs)) for ps, cs, n in zip(values, indices, counts)
    ]


def _class_map(cells: NetCells, values: np.ndarray) -> ClassMap:
    """One category's ``values`` (``h' x w'``) of a net's class maps, for :mod:`fcnx.method.evidence`."""
    return ClassMap(values, cells.size, cells.stride, cells.origin)


def _to_device(images: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Stack equally sized images on ``device``; for CUDA through pinned memory with an asynchronous copy."""
    if device.type != "cuda":
        return torch.stack(images).to(device)
    staged = torch.empty((len(images), *images[0].shape), dtype=images[0].dtype, pin_memory=True)
    return torch.stack(images, out=staged).to(device, non_blocking=True)


#: what tells classes of one name apart: a trailing ``(...)``, as ImageNet's ``crane (n02012849)``, ``crane (n03126707)``
_QUALIFIER = re.compile(r"\s*\([^()]*\)\s*$")


def _preview(names: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(c) for c in names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")


def _label_level(
    ensemble: Ensemble,
    item: ImageItem,
    size: tuple[int, int],
    tensor: torch.Tensor,
    scaled: tuple[int, int],
    index: int,
) -> tuple[Level, tuple[np.ndarray, np.ndarray], list[ClassMap | None]]:
    """One level of :meth:`Cropper.label_levels`: the category's :class:`Level`, the top-class map, the nets' class
    maps."""
    try:
        probs, cells = ensemble.outputs_at(tensor, scaled)
    except NonFiniteOutput as exc:  # named as the batched path names it
        raise FcnxError(f"{exc} (image {size[1]}x{size[0]})", item.path) from None
    probs = probs[0]  # nets x classes x h x w
    level = Level(probs[:, index].cpu().numpy(), (probs.argmax(dim=1) == index).cpu().numpy())
    values, classes = probs.sum(dim=0).max(dim=0)
    maps = [None if c is None else _class_map(c, c.logits[0, index].cpu().numpy()) for c in cells]
    return level, (values.cpu().numpy(), classes.cpu().numpy()), maps
