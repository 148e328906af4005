"""The pure method of the paper in numpy: pyramid geometry, selection rules, localization metrics."""
