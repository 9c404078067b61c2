"""What the proxy's tests share: test methods, images as data URLs, chat messages, a workdir."""

from __future__ import annotations

import base64
import dataclasses
import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image

UPSTREAM_KEY = "sk-upstream-ZLGq9T2f"  # what the upstream must see, and no log may show
TOKEN = "proxy-token-4bXw7"  # what clients send the proxy


@dataclasses.dataclass(frozen=True)
class FakeMethod:
  """The fields of `anonymax.methods.Method`, for deterministic stand-ins."""

  name: str
  anonymize: Callable[[np.ndarray], np.ndarray]
  description: str = "a test method"
  warning: str | None = None


INVERT = FakeMethod("invert", lambda x: 255 - np.asarray(x))


def photo(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
  """uint8 [h, w, 3] random pixels: no two images alike, none equal to its inverse."""
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def smooth(h: int = 24, w: int = 32) -> np.ndarray:
  """uint8 [h, w, 3] gradients (red along x, green along y): survives JPEG, shows orientation."""
  y, x = np.mgrid[0:h, 0:w]
  return np.stack(
    [255 * x // max(w - 1, 1), 255 * y // max(h - 1, 1), np.full_like(x, 60)], -1
  ).astype(np.uint8)


def encoded(pixels_or_image, fmt: str = "PNG", **save) -> bytes:
  img = (
    pixels_or_image
    if isinstance(pixels_or_image, Image.Image)
    else Image.fromarray(pixels_or_image)
  )
  buf = io.BytesIO()
  img.save(buf, fmt, **save)
  return buf.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
  return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def png_url(pixels: np.ndarray) -> str:
  return data_url(encoded(pixels, "PNG"))


def opened(url: str) -> Image.Image:
  """The image inside a data URL, opened (lazily) with Pillow."""
  header, _, payload = url.partition(",")
  assert header.startswith("data:image/") and header.endswith(";base64"), header[:40]
  return Image.open(io.BytesIO(base64.b64decode(payload)))


def pixels_of(url: str) -> np.ndarray:
  return np.asarray(opened(url))


def chat(*urls: str, text: str = "What is in the image?") -> list[dict]:
  """One user message: `text` and an image_url part per URL."""
  parts = [{"type": "text", "text": text}]
  parts += [{"type": "image_url", "image_url": {"url": u, "detail": "low"}} for u in urls]
  return [{"role": "user", "content": parts}]


def build_workdir(root: str) -> str:
  """A learned anonymizer's workdir as training leaves it (config.json and a step-3 checkpoint),
  built in seconds from the smoke config's anonymizer without data or training; the parameters are
  moved away from their initialisation so that the anonymizer visibly changes images."""
  import flax
  import jax
  import jax.numpy as jnp

  from anonymax import anonymizer, checkpoint, run_config
  from anonymax.configs import synthetic

  @flax.struct.dataclass
  class State:  # what `checkpoint.save` reads of a training state: a pytree with `params`
    params: dict
    step: jax.Array

  config = synthetic.get_config("smoke")
  description = anonymizer.model_config(config)
  size = description["image_size"]
  params = anonymizer.build(description).init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
  params = jax.tree.map(lambda p: p + 0.3, params["params"])
  workdir = os.path.join(root, "w")
  os.makedirs(workdir)
  run_config.save(config, workdir)
  checkpoint.save(
    checkpoint.manager(workdir), 3, State(params, jnp.int32(3)), {"step": 3}, description
  )
  return workdir
