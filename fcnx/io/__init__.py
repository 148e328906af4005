"""File I/O without torch: images, dataset lists, atomic files, the crop journal."""
