"""One image of a request: bytes in, pixels out, and anonymized pixels back to a clean data URL.

Untrusted bytes go through Pillow with only the formats an MLLM accepts enabled, and with the
pixel count read from the image's header and checked before any pixel is decoded. What is sent on
is always a freshly built image (`Image.fromarray` of the anonymizer's output), so none of the
input's metadata (EXIF with GPS, PNG text chunks, XMP, ICC profiles, comments) can come along:
there is nothing to strip, because nothing is copied.
"""

from __future__ import annotations

import base64
import binascii
import io
import zlib

import numpy as np
from PIL import Image, ImageOps

from anonymax.proxy.errors import ProxyError

# The formats OpenAI's API accepts, plus BMP. Restricting Pillow's decoders keeps the attack
# surface of a server that decodes strangers' bytes small (no TIFF, PSD, EPS...).
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
_MODES_16BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# Quality of re-encoded JPEGs: high, since the upstream model should see what the anonymizer made.
JPEG_QUALITY = 95
# PNG's fastest deflate level with run-length matching only: re-encoding is on every request's
# critical path, and on 512×512 photos this takes a quarter of the default's time (level 6) for
# files no larger.
PNG_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_RLE}


def data_url_bytes(url: str, *, max_bytes: int, param: str) -> bytes:
  """The encoded image inside a ``data:[<media type>];base64,<data>`` URL.

  The decoded size is computed from the URL's length and checked against `max_bytes` before any
  base64 is decoded.

  Raises:
    ProxyError: 400 for a malformed URL, 413 for an image over `max_bytes`.
  """
  header, comma, payload = url.partition(",")
  if not comma or not header[:5].lower() == "data:":
    raise ProxyError(400, f"{param}: not a data URL", code="invalid_image_url", param=param)
  params = header[5:].split(";")
  if params[-1].strip().lower() != "base64":
    raise ProxyError(
      400,
      f"{param}: a data URL image must be base64-encoded",
      code="invalid_image_url",
      param=param,
    )
  media_type = params[0].strip().lower()
  if media_type and not media_type.startswith("image/"):
    raise ProxyError(
      400, f"{param}: the data URL is not an image", code="invalid_image_url", param=param
    )
  if len(payload) // 4 * 3 > max_bytes:
    raise ProxyError(
      413,
      f"{param}: the image is over {max_bytes} bytes",
      code="image_too_large",
      param=param,
    )
  try:
    return base64.b64decode(payload, validate=True)
  except (binascii.Error, ValueError):
    raise ProxyError(
      400, f"{param}: the data URL's base64 is invalid", code="invalid_image_url", param=param
    ) from None


def decode(data: bytes, *, max_pixels: int, param: str) -> tuple[np.ndarray, str]:
  """The pixels of an encoded image as uint8 [H, W, 3] upright RGB, and its format ("JPEG"...).

  EXIF orientation is applied (the anonymizer must see the image as people see it, and the
  orientation tag is not sent on). Transparent pixels are composited over white, so colours hidden
  under alpha = 0 are not sent. 16-bit greyscale is scaled to 8 bits. Animated images keep their
  first frame only.

  Raises:
    ProxyError: 413 when width × height > `max_pixels` (checked before decoding), 400 when the
      bytes are not an image in `FORMATS` or do not decode.
  """
  try:
    img = Image.open(io.BytesIO(data), formats=FORMATS)
  except Image.DecompressionBombError:
    raise _too_many_pixels(param, max_pixels) from None
  except Exception:  # noqa: BLE001 — whatever a decoder makes of a stranger's bytes is a 400.
    raise ProxyError(
      400, f"{param}: the image does not decode", code="invalid_image", param=param
    ) from None
  with img:
    width, height = img.size
    if width * height > max_pixels:
      raise _too_many_pixels(param, max_pixels)
    # Phones' JPEGs with a second picture (depth map, preview) open as MPO: a JPEG all the same.
    fmt = "JPEG" if img.format == "MPO" else img.format or "PNG"
    try:
      return _upright_rgb(img), fmt
    except Image.DecompressionBombError:
      raise _too_many_pixels(param, max_pixels) from None
    except Exception:  # noqa: BLE001 — a truncated or corrupt image, found while decoding.
      raise ProxyError(
        400, f"{param}: the image does not decode", code="invalid_image", param=param
      ) from None


def _too_many_pixels(param: str, max_pixels: int) -> ProxyError:
  return ProxyError(
    413, f"{param}: the image has over {max_pixels} pixels", code="image_too_large", param=param
  )


def _upright_rgb(img: Image.Image) -> np.ndarray:
  img = ImageOps.exif_transpose(img)
  if img.mode in _MODES_16BIT:
    values = np.asarray(img)
    # Pillow keeps 16-bit samples unscaled; "I" (32-bit) holds either kind, told by its range.
    if img.mode != "I" or values.max(initial=0) > 255:
      values = np.rint(values.astype(np.float32) / 257.0)
    grey = np.clip(values, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)
  if img.mode in _ALPHA_MODES or "transparency" in img.info:
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    img = Image.alpha_composite(white, rgba)
  return np.asarray(img.convert("RGB"), np.uint8)


def encode(pixels: np.ndarray, fmt: str) -> str:
  """uint8 [H, W, 3] as a data URL: JPEG when the input was a JPEG, else PNG; no metadata."""
  img = Image.fromarray(np.ascontiguousarray(pixels, np.uint8))
  buf = io.BytesIO()
  if fmt == "JPEG":
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    media_type = "image/jpeg"
  else:
    img.save(buf, "PNG", **PNG_OPTIONS)
    media_type = "image/png"
  return f"data:{media_type};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"
