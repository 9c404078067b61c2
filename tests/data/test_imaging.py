"""Centre-square decoding of dataset images."""

import numpy as np
import pytest
from PIL import Image

from anonymax.data import imaging


def test_shorter_side_scaled_and_centre_cropped():
  # A 40x20 image (w x h): left quarter red, middle half green, right quarter blue.
  a = np.zeros((20, 40, 3), np.uint8)
  a[:, :10, 0] = 255
  a[:, 10:30, 1] = 255
  a[:, 30:, 2] = 255
  out = imaging.center_square(Image.fromarray(a), 10)
  # Shorter side 20 -> 10 gives 20x10; the centre 10 columns are the green half.
  assert out.shape == (10, 10, 3) and out.dtype == np.uint8
  assert out[:, 2:8, 1].min() > 200 and out[:, 2:8, [0, 2]].max() < 50


def test_modes_become_rgb_and_rounding_never_cuts_short():
  grey = Image.fromarray(np.full((7, 13), 100, np.uint8), mode="L")
  out = imaging.center_square(grey, 5)
  assert out.shape == (5, 5, 3) and np.all(np.abs(out.astype(int) - 100) <= 1)
  rgba = Image.new("RGBA", (3, 1000), (10, 20, 30, 0))
  assert imaging.center_square(rgba, 4).shape == (4, 4, 3)


def test_load_image_names_the_bad_file(tmp_path):
  good = tmp_path / "ok.jpg"
  Image.new("RGB", (30, 20), (200, 10, 10)).save(good)
  assert imaging.load_image(str(good), 8).shape == (8, 8, 3)
  bad = tmp_path / "broken.jpg"
  bad.write_bytes(b"not an image")
  with pytest.raises(ValueError, match="broken.jpg: not a readable image"):
    imaging.load_image(str(bad), 8)
  with pytest.raises(ValueError, match="missing.jpg: image file not found"):
    imaging.load_image(str(tmp_path / "missing.jpg"), 8)
  with pytest.raises(ValueError, match="size=0"):
    imaging.center_square(Image.new("RGB", (2, 2)), 0)
