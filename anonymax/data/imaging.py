"""Decoding dataset images into the square uint8 arrays the models take.

Real datasets come in all sizes and aspect ratios; the anonymizer and the reviewer take S×S. The
usual evaluation crop is used: scale the shorter side to S (bicubic, antialiased by Pillow), then
cut the centre S×S. Every mode Pillow reads (greyscale, palette, CMYK, RGBA) becomes RGB.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError


def center_square(img: Image.Image, size: int) -> np.ndarray:
  """uint8 [size, size, 3]: `img` with its shorter side scaled to `size`, centre-cropped."""
  if size < 1:
    raise ValueError(f"size={size}: must be >= 1")
  img = img.convert("RGB")
  w, h = img.size
  scale = size / min(w, h)
  # max(size, ·): rounding must never leave the longer side short of the crop.
  new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
  img = img.resize((new_w, new_h), Image.BICUBIC)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  return np.asarray(img.crop((left, top, left + size, top + size)), np.uint8)


def load_image(path: str, size: int) -> np.ndarray:
  """Reads `path` and returns `center_square(image, size)`.

  Raises:
    ValueError: naming `path`, when the file is missing or not an image Pillow can decode.
  """
  try:
    with Image.open(path) as img:
      img.load()
      return center_square(img, size)
  except FileNotFoundError:
    raise ValueError(f"{path}: image file not found") from None
  except (UnidentifiedImageError, OSError) as e:
    raise ValueError(f"{path}: not a readable image ({e})") from None
