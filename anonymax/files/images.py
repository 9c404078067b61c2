"""Users' photos as they look on screen, read safely, and written back without metadata.

Reading (`read_image`):
  * the pixel count is checked from the header, before anything is decoded, so a small file that
    claims 14000×14000 pixels (a decompression bomb) is refused cheaply;
  * the EXIF orientation is applied, so a portrait shot comes out upright (the EXIF block itself
    is not kept, so its orientation has to be baked into the pixels);
  * 16-bit greyscale (modes "I;16*", and "I", which Pillow uses for 16-bit PNGs) is scaled to 8
    bit (v / 257), not clipped to white as a plain RGB conversion would;
  * an alpha channel (RGBA, LA, or a palette or colour key with transparency) is returned apart,
    so the anonymizer sees RGB and the written PNG keeps the transparency;
  * a multi-frame file (animated WebP, multi-page TIFF) gives its first frame.

Writing (`write_png`): a fresh PNG of the pixels only: no EXIF (camera, GPS position, time), no
text chunks, no ICC profile.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageOps

# Modes holding one channel of more than 8 bits.
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _too_many(path: str, width: int, height: int, max_pixels: int) -> ValueError:
  return ValueError(
    f"{path}: {width}×{height} = {width * height:,} pixels, over --max_pixels={max_pixels} "
    "(raise it to anonymize this file)"
  )


def check_pixels(path: str, width: int, height: int, max_pixels: int) -> None:
  """Raises a ValueError naming `path` when width × height exceeds `max_pixels`."""
  if width * height > max_pixels:
    raise _too_many(path, width, height, max_pixels)


def _to_rgb_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
  if img.mode in _WIDE_GREY:
    wide = np.asarray(img).astype(np.float64)
    grey = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
    alpha = None
    key = img.info.get("transparency")
    if isinstance(key, int):  # a 16-bit colour key (PNG tRNS)
      alpha = np.where(wide == key, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1), alpha
  if img.mode in _ALPHA_MODES or "transparency" in img.info:
    rgba = np.asarray(img.convert("RGBA"))
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
  return np.asarray(img.convert("RGB")), None


def read_image(path: str, *, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None]:
  """A user's image as displayed: uint8 RGB [H, W, 3] and its alpha [H, W] (None when opaque).

  Raises:
    ValueError: naming `path`: not an image, truncated, or over `max_pixels` pixels.
  """
  try:
    with warnings.catch_warnings():
      # Pillow warns above its own limit; we check the header against max_pixels ourselves.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      img = Image.open(path)
  except Image.DecompressionBombError as e:  # over twice Pillow's limit: refused in the header
    raise ValueError(f"{path}: over --max_pixels={max_pixels} ({e})") from e
  except OSError as e:  # not an image, or a header we cannot parse
    raise ValueError(f"{path}: cannot read image ({e})") from e
  with img:
    check_pixels(path, *img.size, max_pixels)
    try:
      img.load()
      upright = ImageOps.exif_transpose(img)
    except OSError as e:  # truncated data, an unsupported compression...
      raise ValueError(f"{path}: cannot read image ({e})") from e
    return _to_rgb_alpha(upright)


def write_png(path: str, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
  """Writes uint8 RGB [H, W, 3] (plus alpha [H, W], if any) as a PNG holding the pixels only."""
  # uint8 [H, W, 4] is RGBA to Pillow, [H, W, 3] RGB.
  pixels = np.dstack([rgb, alpha]) if alpha is not None else np.ascontiguousarray(rgb)
  img = Image.fromarray(pixels.astype(np.uint8, copy=False))
  img.save(path, format="PNG")  # a fresh image: its info (EXIF, text, ICC) is empty


def resize(rgb: np.ndarray, alpha: np.ndarray | None, size: int):
  """`--size`: both resized to size×size (bilinear), as the training data's square frames."""
  rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
  if alpha is not None:
    alpha = np.asarray(Image.fromarray(alpha).resize((size, size), Image.BILINEAR))
  return rgb, alpha
