"""Real photos bundled with scikit-image, with hand-annotated boxes of an ImageNet object in each.

For tests, benchmarks and docs that need real images on an offline machine. The boxes were
drawn by looking at the photos (``x, y, w, h`` in pixels of the photo as scikit-image returns
it); ``accept`` lists the ImageNet-1k class names that count as finding the object (ImageNet
has several cat breeds, no "motorcycle" but "moped" and "motor scooter"). Loading needs
``scikit-image`` (in fcnx's ``test`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOMESTIC_CATS = ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")


@dataclass(frozen=True)
class AnnotatedPhoto:
    """One object in one scikit-image photo."""

    name: str  # key in :data:`PHOTOS`
    loader: str  # function of ``skimage.data``
    category: str  # the ImageNet class to look for
    accept: tuple[str, ...]  # classes that count as a hit (include ``category``)
    box: tuple[int, int, int, int]  # (x, y, w, h) of the object
    note: str = ""

    def load(self) -> Any:
        """The photo as an ``H x W x 3`` uint8 RGB array (grey photos repeated on three channels)."""
        import numpy as np
        from skimage import data

        image = getattr(data, self.loader)()
        if isinstance(image, tuple):  # stereo pairs: the left view
            image = image[0]
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        return np.ascontiguousarray(image[:, :, :3])

    def crop(self) -> Any:
        """The annotated box cut out of the photo."""
        x, y, w, h = self.box
        return self.load()[y : y + h, x : x + w]


PHOTOS: dict[str, AnnotatedPhoto] = {
    p.name: p
    for p in (
        AnnotatedPhoto(
            "coffee",
            "coffee",
            "espresso",
            ("espresso",),
            (172, 17, 238, 290),
            "the cup with its handle, without saucer and spoon",
        ),
        AnnotatedPhoto(
            "chelsea",
            "chelsea",
            "Egyptian cat",
            DOMESTIC_CATS,
            (0, 0, 395, 300),
            "the cat's head and shoulders fill most of the photo",
        ),
        AnnotatedPhoto(
            "motorcycle",
            "stereo_motorcycle",
            "moped",
            ("moped", "motor scooter"),
            (92, 90, 592, 362),
            "whole motorcycle, mirrors to tyres; ImageNet's nearest classes",
        ),
        AnnotatedPhoto(
            "camera",
            "camera",
            "tripod",
            ("tripod",),
            (229, 138, 181, 374),
            "the tripod with the camcorder on it (grey photo; too tall for a square window to reach IoU 0.5)",
        ),
        AnnotatedPhoto(
            "astronaut_shuttle",
            "astronaut",
            "space shuttle",
            ("space shuttle",),
            (356, 0, 114, 278),
            "the shuttle model on its stand, top right",
        ),
        AnnotatedPhoto(
            "astronaut_helmet",
            "astronaut",
            "football helmet",
            ("football helmet", "crash helmet"),
            (278, 343, 234, 169),
            "the spacesuit helmet, bottom right; the nets call it a football helmet",
        ),
        AnnotatedPhoto(
            "rocket",
            "rocket",
            "missile",
            ("missile", "projectile"),
            (305, 125, 33, 285),
            "the rocket alone (a thin box: no square window reaches IoU 0.5)",
        ),
    )
}


def square_around(box: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int, int]:
    """The square of side ``max(w, h)`` (at most the photo's short side) centred on ``box``, moved inside the photo."""
    x, y, w, h = box
    side = min(max(w, h), height, width)
    x0 = min(max(0, round(x + w / 2 - side / 2)), width - side)
    y0 = min(max(0, round(y + h / 2 - side / 2)), height - side)
    return x0, y0, side, side
