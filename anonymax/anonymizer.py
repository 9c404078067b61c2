"""The trained anonymizer on its own: restored from a workdir without data, reviewer or optimizer.

Every checkpoint holds the anonymizer's parameters and a JSON description of it (`model_config`):
the model's name and fields, and what it was trained on (image size, clip length, dataset). That
is all that anonymizing needs:

  >>> import anonymax
  >>> anonymize = anonymax.load_anonymizer("workdirs/synthetic")
  >>> private = anonymize(images)            # uint8 [N, H, W, 3] → uint8 [N, H, W, 3]

This module imports no dataset and no oracle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from anonymax import checkpoint, models
from anonymax.types import to_uint8


def model_config(config) -> dict[str, Any]:
  """The anonymizer's description from a run's config: what `build` needs, and its training data.

  Returns:
    {"model": {"name": ..., <the module's fields>}, "image_size": S, "clip_length": T,
    "dataset": the utility dataset's name}, JSON-able.
  """
  fields = config.anonymizer.to_dict()
  return {
    "model": {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
    "image_size": int(config.data.image_size),
    "clip_length": int(config.data.get("clip_length") or 0),
    "dataset": str(config.data.dataset),
  }


def build(description: dict[str, Any]):
  """The anonymizer module described by `model_config`'s output (or its "model" part)."""
  fields = dict(description.get("model", description))
  name = fields.pop("name")
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
  return models.get_model(name, **fields)


@dataclasses.dataclass(frozen=True)
class Restored:
  """A restored anonymizer.

  Attributes:
    module: the flax module f_A.
    params: its parameters θ (the checkpoint's).
    description: `model_config`'s output as the checkpoint stores it.
    step: the training step of the checkpoint.
  """

  module: Any
  params: Any
  description: dict[str, Any]
  step: int

  @property
  def multiple(self) -> int:
    """Image sides must be multiples of this (the U-Net halves them len(features) − 1 times)."""
    features = self.description["model"].get("features")
    return 2 ** (len(features) - 1) if features else 1

  def apply(self, x: jax.Array) -> jax.Array:
    """f_A(x; θ) on float visuals in [0, 1] (traceable)."""
    return self.module.apply({"params": self.params}, x)


def restore(workdir: str, step: int | None = None) -> Restored:
  """The anonymizer of checkpoint `step` (default: the latest) of a training workdir.

  Raises:
    FileNotFoundError: the workdir has no checkpoint.
    ValueError: the checkpoint has no standalone anonymizer (an earlier version wrote it).
  """
  mgr = checkpoint.manager(workdir, read_only=True)
  params, description, step = checkpoint.restore_anonymizer(mgr, step)
  return Restored(build(description), params, description, step)


def pad_to_multiple(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
  """Pads the two spatial axes of [..., H, W, C] up to multiples (reflected; edge for 1 pixel).

  Returns:
    (the padded array, the original (H, W)) so the result can be cropped back.
  """
  h, w = x.shape[-3], x.shape[-2]
  ph, pw = (-h) % multiple, (-w) % multiple
  pad = [(0, 0)] * (x.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
  if not (ph or pw):
    return x, (h, w)
  return np.pad(x, pad, mode="reflect" if min(h, w) > 1 else "edge"), (h, w)


def load_anonymizer(workdir: str, step: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
  """A function anonymizing uint8 images [N, H, W, 3] (or clips [N, T, H, W, 3]) with the
  anonymizer of `workdir`'s latest checkpoint (or of `step`).

  Inputs of any size are padded to what the U-Net needs and the output cropped back; the result
  is uint8, quantised as the training oracle saw it. The model runs jitted (one compilation per
  input shape).

  Raises:
    FileNotFoundError / ValueError: as `restore`.
  """
  restored = restore(workdir, step)
  apply = jax.jit(lambda x: restored.apply(x.astype(jnp.float32) / 255.0))

  def anonymize(visuals: np.ndarray) -> np.ndarray:
    visuals = np.asarray(visuals)
    if visuals.dtype != np.uint8 or visuals.ndim not in (4, 5) or visuals.shape[-1] != 3:
      raise ValueError(
        f"expected uint8 images [N, H, W, 3] or clips [N, T, H, W, 3], got {visuals.dtype} "
        f"{visuals.shape}"
      )
    padded, (h, w) = pad_to_multiple(visuals, restored.multiple)
    out = to_uint8(np.asarray(apply(padded)))
    return out[..., :h, :w, :]

  return anonymize
