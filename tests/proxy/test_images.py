"""One image's way through the proxy: decoded upright to 8-bit RGB whatever its mode, limits
checked before the pixels are decoded, re-encoded without metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from anonymax.proxy import ProxyError, images
from tests.proxy import helpers

P = "messages[0].content[0].image_url.url"


def _decode(data: bytes, max_pixels: int = 10**7):
  return images.decode(data, max_pixels=max_pixels, param=P)


def test_8_bit_rgb_round_trips_exactly_through_png():
  raw = helpers.photo(13, 7)
  pixels, fmt = _decode(helpers.encoded(raw))
  assert fmt == "PNG" and pixels.dtype == np.uint8
  np.testing.assert_array_equal(pixels, raw)
  np.testing.assert_array_equal(helpers.pixels_of(images.encode(pixels, fmt)), raw)


def test_16_bit_greyscale_is_scaled_to_8_bits():
  grey = np.array([[0, 257, 65535], [32896, 1000, 200]], np.uint16)
  pixels, _ = _decode(helpers.encoded(Image.fromarray(grey)))
  want = np.rint(grey / 257.0).astype(np.uint8)
  np.testing.assert_array_equal(pixels, np.repeat(want[..., None], 3, -1))


def test_transparent_pixels_are_white_not_their_hidden_colour():
  rgba = np.zeros((2, 2, 4), np.uint8)
  rgba[..., :3] = (200, 10, 30)  # hidden under alpha 0 in three pixels
  rgba[0, 0, 3] = 255
  rgba[1, 1, 3] = 128
  pixels, _ = _decode(helpers.encoded(Image.fromarray(rgba)))
  assert tuple(pixels[0, 0]) == (200, 10, 30) and tuple(pixels[0, 1]) == (255, 255, 255)
  np.testing.assert_allclose(pixels[1, 1], (228, 132, 142), atol=1)  # half over white
  # A palette image with a transparent index, and greyscale with alpha.
  pal = Image.new("P", (2, 1))
  pal.putpalette([255, 0, 0, 0, 0, 255])
  pal.putpixel((1, 0), 1)
  pixels, _ = _decode(helpers.encoded(pal, "PNG", transparency=1))
  assert pixels.tolist() == [[[255, 0, 0], [255, 255, 255]]]
  pixels, _ = _decode(helpers.encoded(Image.new("LA", (1, 1), (0, 0))))
  assert pixels.tolist() == [[[255, 255, 255]]]


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "GIF", "BMP"])
def test_the_other_accepted_formats_decode(fmt):
  raw = helpers.smooth(16, 16)
  pixels, got = _decode(helpers.encoded(raw, fmt))
  assert got == fmt and pixels.shape == (16, 16, 3)
  if fmt == "BMP":
    np.testing.assert_array_equal(pixels, raw)


def test_an_animated_gif_keeps_its_first_frame_only():
  frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
  buf = io.BytesIO()
  frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
  pixels, _ = _decode(buf.getvalue())
  assert (pixels == (255, 0, 0)).all()


def test_a_phones_multi_picture_jpeg_is_a_jpeg_of_its_first_picture():
  first, second = (Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255)))
  buf = io.BytesIO()
  first.save(buf, "MPO", save_all=True, append_images=[second])
  pixels, fmt = _decode(buf.getvalue())
  assert fmt == "JPEG" and np.abs(pixels.astype(int) - (255, 0, 0)).max() < 8
  assert helpers.opened(images.encode(pixels, fmt)).format == "JPEG"


def test_the_pixel_limit_is_checked_before_decoding():
  # Only the header is intact: decoding would fail (a 400), the header check refuses first.
  png = helpers.encoded(helpers.photo(100, 100))
  with pytest.raises(ProxyError) as e:
    _decode(png[:200], max_pixels=100 * 100 - 1)
  assert e.value.status == 413 and e.value.code == "image_too_large" and e.value.param == P
  with pytest.raises(ProxyError) as e:
    _decode(png[:200], max_pixels=100 * 100)
  assert e.value.status == 400 and e.value.code == "invalid_image"


def test_the_image_size_is_checked_from_the_data_urls_length_before_decoding():
  url = helpers.data_url(b"x" * 3000)
  assert images.data_url_bytes(url, max_bytes=3000, param=P) == b"x" * 3000
  with pytest.raises(ProxyError) as e:
    images.data_url_bytes(
      url[:-4] + "!!!!", max_bytes=2999, param=P
    )  # refused before the bad base64
  assert e.value.status == 413


def test_encoding_keeps_no_metadata():
  pixels = helpers.smooth()
  for fmt, media in (("JPEG", "image/jpeg"), ("PNG", "image/png")):
    url = images.encode(pixels, fmt)
    assert url.startswith(f"data:{media};base64,")
    img = helpers.opened(url)
    assert not img.getexif() and not set(img.info) - {
      "jfif",
      "jfif_version",
      "jfif_unit",
      "jfif_density",
      "dpi",
    }
