"""The fitted box (``--box fitted``) on hand-made images: GrabCut's seeds, the regions kept, exact boxes."""

from __future__ import annotations

import numpy as np
import pytest

from fcnx.errors import UsageError
from fcnx.method import fitting

cv2 = pytest.importorskip("cv2")  # the test extra installs it; a core install without it is tested below


def _scene(
    height: int = 120, width: int = 160, obj: tuple[int, int, int, int] = (50, 30, 40, 70), seed: int = 0
) -> np.ndarray:
    """Dark textured background, one bright object ``(x, y, w, h)``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, size=(height, width, 3)).astype(np.uint8)
    x, y, w, h = obj
    pixels[y : y + h, x : x + w] = rng.integers(200, 256, size=(h, w, 3))
    return pixels


def test_seeds_mark_sure_background_ring_box_and_sure_object():
    sure = np.zeros((10, 12), dtype=bool)
    sure[4, 5] = sure[0, 0] = True  # the second lies outside the box: not sure object
    labels = fitting.seeds((10, 12), (4, 2, 8, 6), sure, margin=0.25)
    # box 4 wide, 4 tall: the ring reaches 1 pixel further each way
    inside = labels[2:6, 4:8]
    assert inside[2, 1] == cv2.GC_FGD and (np.delete(inside.ravel(), 9) == cv2.GC_PR_FGD).all()
    assert labels[0, 0] == cv2.GC_BGD
    ring = np.zeros((10, 12), dtype=bool)
    ring[1:7, 3:9] = True
    ring[2:6, 4:8] = False
    assert (labels[ring] == cv2.GC_PR_BGD).all()
    box = np.zeros((10, 12), dtype=bool)
    box[2:6, 4:8] = True
    assert (labels[~ring & ~box] == cv2.GC_BGD).all()
    assert (labels == cv2.GC_FGD).sum() == 1


def test_object_box_keeps_the_regions_in_the_box_and_drops_specks_and_outsiders():
    fg = np.zeros((20, 30), dtype=bool)
    fg[5:15, 5:12] = True  # 70 pixels inside the box
    fg[6:9, 14:16] = True  # 6 pixels inside: more than 5 % of 70, kept
    fg[18, 20] = True  # a speck outside the box: dropped
    fg[0:3, 25:30] = True  # a region outside the box: dropped
    assert fitting.object_box(fg, (4, 4, 18, 16)) == (5, 5, 16, 15)
    fg[6:9, 14:16] = False
    fg[7, 14] = True  # 1 pixel inside: under 5 % of 70, dropped
    assert fitting.object_box(fg, (4, 4, 18, 16)) == (5, 5, 12, 15)
    assert fitting.object_box(np.zeros((5, 5), dtype=bool), (0, 0, 5, 5)) is None


def test_a_loose_box_snaps_to_the_object_exactly():
    pixels = _scene()
    fitted = fitting.fit_box(pixels, (120, 160), (35.0, 20.0, 70.0, 90.0))
    assert fitted == (50.0, 30.0, 40.0, 70.0)


def test_boxes_are_in_the_pixels_of_the_full_size_whatever_the_size_of_the_pixels():
    # the object at (100, 60, 80, 140) of a 240 x 320 image, decoded at half size; fitted at a long side of 80
    pixels = _scene(obj=(50, 30, 40, 70))
    fitted = fitting.fit_box(pixels, (240, 320), (70.0, 40.0, 140.0, 180.0), side=80)
    assert fitted == pytest.approx((100.0, 60.0, 80.0, 140.0))


def test_the_fitted_box_is_the_same_every_time():
    pixels = _scene(seed=3)
    boxes = {fitting.fit_box(pixels, (120, 160), (30.0, 15.0, 80.0, 95.0)) for _ in range(3)}
    cv2.setRNGSeed(12345)  # another caller's seed does not change it
    boxes.add(fitting.fit_box(pixels, (120, 160), (30.0, 15.0, 80.0, 95.0)))
    assert len(boxes) == 1


def test_sure_object_from_the_map_keeps_what_the_colours_alone_would_drop():
    # the object's lower half looks like the background: the colours alone see only its bright top
    pixels = _scene()
    pixels[65:100, 50:90] = np.random.default_rng(1).integers(0, 60, size=(35, 40, 3))
    heat = np.zeros((120, 160))
    heat[70:95, 55:85] = 1.0  # the class maps say the object is there
    alone = fitting.fit_box(pixels, (120, 160), (35.0, 20.0, 70.0, 90.0))
    with_map = fitting.fit_box(pixels, (120, 160), (35.0, 20.0, 70.0, 90.0), heat)
    assert alone == (50.0, 30.0, 40.0, 35.0)
    assert with_map[:3] == (50.0, 30.0, 40.0) and 65.0 <= with_map[3] <= 70.0  # down to the sure rows at least


def test_the_tight_box_is_kept_where_grabcut_cannot_work():
    pixels = _scene()
    whole = (0.0, 0.0, 160.0, 120.0)  # no background to learn from
    assert fitting.fit_box(pixels, (120, 160), whole) == whole
    tiny = (10.0, 10.0, 1.0, 1.0)
    assert fitting.fit_box(pixels, (120, 160), tiny) == tiny
    flat = np.zeros((120, 160, 3), dtype=np.uint8)  # one colour: no object found
    assert fitting.fit_box(flat, (120, 160), (35.0, 20.0, 70.0, 90.0)) == (35.0, 20.0, 70.0, 90.0)
    with pytest.raises(ValueError, match="uint8"):
        fitting.fit_box(pixels.astype(np.float32), (120, 160), whole)


def test_without_opencv_the_error_is_one_line_on_the_box_option(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)
    with pytest.raises(UsageError, match=r"pip install 'fcnx\[fit\]'") as caught:
        fitting.opencv()
    assert caught.value.parameter == "box"
