"""The Grad-CAM baseline the benchmarks compare fcnx's boxes with: an ensemble Grad-CAM box.

pytorch-grad-cam's GradCAM (PyPI ``grad-cam``, the ``bench`` extra, imported only when an ensemble is made) on
each net's own classifier, the image squashed to the net's native input size (``at_image_size``: the
image as it is), each map resized to the image, the mean of the nets' maps, and the box of its largest
region at >= half its peak. Label-free, the category is the top class of the nets' mean probabilities.
``benchmarks/real_photos.py`` (EfficientNet-Lite) and ``benchmarks/canvases_gradcam.py`` (fcnx-tiny on
the canvases of ``fcnx bench localization``) both use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fcnx.method.geometry import XYWH

#: the share of the mean map's peak a region must reach
PEAK_SHARE = 0.5


def target_layer(model: Any) -> Any:
    """The layer Grad-CAM reads in ``model``: its ``features`` trunk, whose output is the map the head pools
    (fcnx-tiny, torchvision's VGG), else its last ``nn.Conv2d`` (timm's EfficientNet: ``conv_head``).

    The last convolution of a ``features`` trunk is not used: in a residual or multi-branch block it is the
    shortcut's projection or one branch, not the block's output.
    """
    from torch import nn

    features = getattr(model, "features", None)
    if isinstance(features, nn.Module):
        return features
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise TypeError(f"{type(model).__name__} has no features trunk and no Conv2d layer for Grad-CAM")
    return convs[-1]


def heat_box(heat: np.ndarray, share: float = PEAK_SHARE) -> XYWH:
    """The box ``(x, y, w, h)`` of the largest connected region of ``heat`` at >= ``share`` of its peak
    (the first of equal ones); the whole map when no value is positive."""
    from scipy import ndimage

    height, width = heat.shape
    if not heat.max() > 0:
        return 0.0, 0.0, float(width), float(height)
    labels, count = ndimage.label(heat >= share * heat.max())
    largest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(heat), labels, range(1, count + 1))))
    rows, cols = np.nonzero(labels == largest)
    return float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1), float(rows.max() - rows.min() + 1)


class GradCamEnsemble:
    """Grad-CAM of several classifiers of one class list; ``nets`` are ``(spec, classifier)`` pairs whose
    classifiers it hooks (:meth:`from_nets` loads its own)."""

    def __init__(self, nets: Sequence[tuple[Any, Any]], classes: Sequence[str], *, at_image_size: bool = False):
        from pytorch_grad_cam import GradCAM

        self.nets = [(spec, model, GradCAM(model=model, target_layers=[target_layer(model)])) for spec, model in nets]
        self.classes = list(classes)
        self.at_image_size = at_image_size

    @classmethod
    def from_nets(
        cls, names: Sequence[str], weights: dict[str, str | Path] | None = None, *, at_image_size: bool = False
    ) -> GradCamEnsemble:
        """The classifiers ``fcnx`` loads for ``names`` (``weights`` by name, default ``"pretrained"``) on the CPU."""
        from fcnx.engine.fcn import load_fcn

        fcns = [load_fcn(name, (weights or {}).get(name, "pretrained")) for name in names]
        if any(f.classes != fcns[0].classes for f in fcns):
            raise ValueError(f"the nets {', '.join(names)} do not share one class list")
        return cls([(f.spec, f.classifier) for f in fcns], fcns[0].classes, at_image_size=at_image_size)

    def _input(self, spec: Any, pixels: np.ndarray) -> Any:
        """``pixels`` (``H x W x 3`` uint8) as the net's normalized input: squashed to its native size, or as it is."""
        import torch
        from PIL import Image

        image = Image.fromarray(pixels)
        if not self.at_image_size:
            image = image.resize((spec.default_size, spec.default_size), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        mean, std = torch.tensor(spec.preprocess.mean)[:, None, None], torch.tensor(spec.preprocess.std)[:, None, None]
        x = (x - mean) / std  # mean and std in RGB order
        return x.flip(1) if spec.preprocess.channel_order == "BGR" else x

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """The nets' mean softmax on the image."""
        import torch

        with torch.no_grad():
            return np.mean([torch.softmax(m(self._input(s, pixels)), 1)[0].numpy() for s, m, _ in self.nets], axis=0)

    def top_class(self, pixels: np.ndarray) -> int:
        """The label-free category: the top class of the nets' mean probabilities."""
        return int(np.argmax(self.probabilities(pixels)))

    def heat(self, pixels: np.ndarray, category: int) -> np.ndarray:
        """The mean of the nets' Grad-CAM maps of ``category`` (each in [0, 1]), at the image's size."""
        from PIL import Image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        height, width = pixels.shape[:2]
        maps = []
        for spec, _, cam in self.nets:
            heat = cam(input_tensor=self._input(spec, pixels), targets=[ClassifierOutputTarget(category)])[0]
            maps.append(
                np.asarray(Image.fromarray(heat.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR))
            )
        return np.mean(maps, axis=0)

    def box(self, pixels: np.ndarray, category: int) -> XYWH:
        """The box of the mean map's largest region at >= half its peak (:func:`heat_box`)."""
        return heat_box(self.heat(pixels, category))
