"""fcnx: image classifiers as fully convolutional networks, and ensemble crops where they find a category."""

__version__ = "0.1.0"
