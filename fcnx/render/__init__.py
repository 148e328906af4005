"""Pictures: training curves, heatmap overlays, HTML pages."""
