"""Crops as a training transform (the same as :mod:`fcnx.training.transforms`): ``from fcnx.transforms import CropToBox``."""

from fcnx.training.transforms import BoxCrops, BoxCutter, CropToBox, jittered_box

__all__ = ["BoxCrops", "BoxCutter", "CropToBox", "jittered_box"]
