"""File I/O without torch: images, dataset lists, atomic files and the OUTDIR lock, the crop journal, CSV tables."""
