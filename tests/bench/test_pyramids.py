"""A photo's stored pyramid (fcnx.bench.pyramids) gives back exactly the boxes ``Cropper`` gives, after a round trip."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_backbones import color_checkpoint

from fcnx.bench import pyramids
from fcnx.engine.cropper import Cropper
from fcnx.method import boxes


@pytest.fixture
def cropper(tmp_path, tiny_registry):
    weights = {n: color_checkpoint(tmp_path / f"{n}.safetensors", n) for n in ["tiny0", "tiny43", "tiny_m25"]}
    return Cropper.from_nets(list(weights), weights, device="cpu")  # the default pyramid, as compute runs


def _image() -> np.ndarray:
    image = np.full((300, 420, 3), 128, np.uint8)
    image[60:240, 40:330] = (230, 20, 20)  # a large red object
    return image


def test_a_stored_pyramid_gives_the_croppers_boxes_for_every_rule(cropper, tmp_path):
    red = cropper.classes.index("red")
    stored = pyramids.compute(cropper.ensemble, _image(), [red], step=1.2)
    assert stored.scaled[-1] == (cropper.ensemble.kernel,) * 2  # the whole-image view comes last
    pyramids.save(stored, tmp_path / "p.npz")
    back = pyramids.load(tmp_path / "p.npz")
    assert back.categories == stored.categories and back.scaled == stored.scaled
    assert all(np.array_equal(a, b) for a, b in zip(back.probs, stored.probs))
    # the whole-image view's top class is kept, and is the top guess fcnx crop reports for the image
    guesses = cropper.crop_image(_image(), ["red"]).guesses
    assert back.label_free_view in back.categories
    assert cropper.classes[back.label_free_view] == guesses[0][0]
    for name in ("square", "tight", "object", "fitted-object"):
        found = back.pyramid(red).select()
        found.pixels = _image()
        (box,) = (
            Cropper(cropper.ensemble, max_scale=cropper.options.max_scale, box=name).crop_image(_image(), ["red"]).boxes
        )
        assert boxes.box(name, found) == pytest.approx((box.x, box.y, box.w, box.h), abs=1e-6)
