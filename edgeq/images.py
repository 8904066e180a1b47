"""The image file extensions edgeq reads (calibration folders, `edgeq run` image sources): one list."""
from __future__ import annotations

# Lower-case, with the dot; OpenCV's imread decodes all of them.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
