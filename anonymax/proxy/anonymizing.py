"""The proxy's work on one request: every image decoded, anonymized by the method and put back.

It runs in a worker thread (the caller hands it to the thread pool), so that decoding, the
anonymizer and encoding never block the event loop that relays other requests and streams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from anonymax.proxy import images, request
from anonymax.proxy.limits import Limits


class Method(Protocol):
  """What the proxy needs of an anonymization method (`anonymax.methods.Method` is one)."""

  name: str
  anonymize: Callable[[np.ndarray], np.ndarray]  # uint8 [N, H, W, 3] → the same shape


def anonymize_request(
  body: dict[str, Any],
  refs: Sequence[request.ImageRef],
  fetched: dict[int, bytes],
  method: Method,
  limits: Limits,
) -> bytes:
  """Replaces every image of `body` by its anonymized version and returns the body to send on.

  Args:
    body: the parsed request; its image parts are rewritten in place.
    refs: its image parts (`request.parse`).
    fetched: the encoded bytes of the remote images, by index into `refs`; every other image is a
      data URL.
    method: the anonymization method.
    limits: the size limits of inline images.

  Raises:
    ProxyError: an image that is malformed, too large or does not decode (nothing is sent).
    RuntimeError: the method returned something other than an image of the input's shape.
  """
  # Images are anonymized one at a time: a batch of them would cost memory in proportion to the
  # request, and a jitted anonymizer compiles once per batch shape.
  for k, ref in enumerate(refs):
    if k in fetched:
      data = fetched[k]
    else:
      data = images.data_url_bytes(ref.url, max_bytes=limits.max_image_bytes, param=ref.param)
    pixels, fmt = images.decode(data, max_pixels=limits.max_pixels, param=ref.param)
    ref.holder["url"] = images.encode(_anonymize(method, pixels), fmt)
  return request.dump(body)


def _anonymize(method: Method, pixels: np.ndarray) -> np.ndarray:
  out = np.asarray(method.anonymize(pixels[None]))
  if out.dtype != np.uint8 or out.shape != (1, *pixels.shape):
    # Never send on something we cannot vouch for: a method bug is a 500, not a leak.
    raise RuntimeError(
      f"method {method.name!r} returned {out.dtype} {out.shape} for uint8 {(1, *pixels.shape)}"
    )
  return out[0]
