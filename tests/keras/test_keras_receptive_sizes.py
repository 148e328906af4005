"""Every Keras backbone's declared formula, measured on the real keras.applications FCN.

For several D, exactly ``stride`` consecutive input sizes starting at ``W_min(D)`` give one heatmap
size, and the sizes just outside give one cell less or more. Shapes come from Keras' symbolic
shape inference (TensorFlow's own shape functions, no arithmetic).
"""

from __future__ import annotations

import pytest
from keras_helpers import KERAS_BACKBONES, needs_tf

from fcnx.testing import formula_boundaries

pytestmark = needs_tf


@pytest.mark.parametrize("name", KERAS_BACKBONES)
def test_declared_formula_matches_keras_implementation(name):
    from fcnx.backbones.registry import get_backbone
    from fcnx_keras.fcn import keras_fcn

    spec = get_backbone(name)
    d0 = spec.pool_size(299)
    fcn = keras_fcn(spec.build(2, (), None), d0)
    sizes, expected = formula_boundaries(spec, d0)
    measured = [fcn.compute_output_shape((1, side, side + spec.stride, 3))[1:3] for side in sizes]
    assert [h for h, _ in measured] == expected
    assert [w for _, w in measured] == [cells + 1 for cells in expected]
    assert [spec.heatmap_side(s, 299) for s in sizes] == expected
