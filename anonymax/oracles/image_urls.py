"""Visuals as the ``data:image/...;base64,`` URLs a chat request carries.

The inverse is `server.decode_data_url`. PNG is lossless, so the server decodes exactly the uint8
pixels that were sent; JPEG is smaller and lossy.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

IMAGE_FORMATS = ("png", "jpeg")


def image_data_url(image: np.ndarray, image_format: str = "png", jpeg_quality: int = 90) -> str:
  """Encodes one uint8 [H, W, 3] image as a ``data:image/...;base64,`` URL (PNG is lossless)."""
  if image_format not in IMAGE_FORMATS:
    raise ValueError(f"image_format={image_format!r}: must be one of {IMAGE_FORMATS}")
  buf = io.BytesIO()
  pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
  if image_format == "png":
    pil.save(buf, format="PNG")
  else:
    pil.save(buf, format="JPEG", quality=jpeg_quality)
  return f"data:image/{image_format};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def visual_data_urls(
  visual: np.ndarray, image_format: str = "png", jpeg_quality: int = 90
) -> list[str]:
  """One data URL per frame: uint8 [H, W, 3] → 1 URL, uint8 [T, H, W, 3] → T URLs."""
  visual = np.asarray(visual)
  if visual.ndim == 3:
    visual = visual[None]
  if visual.ndim != 4 or visual.shape[-1] != 3:
    raise ValueError(f"visual of shape {visual.shape}: want [H, W, 3] or [T, H, W, 3]")
  return [image_data_url(frame, image_format, jpeg_quality) for frame in visual]
