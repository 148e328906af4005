"""The ground-truth benchmark: canvases generator, localization experiment, its report."""
