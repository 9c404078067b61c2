"""What one request may ask of the proxy: body size, image count and size, remote fetches."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Limits:
  """The proxy's limits (every one enforced before the work it bounds is done).

  Attributes:
    max_body_bytes: the request body, checked on Content-Length before reading and while reading.
    max_images: image parts in one request.
    max_image_bytes: one inline (data URL) image, encoded, checked from the URL's length before
      the base64 is decoded. OpenAI's own limit is 20 MB per image.
    max_pixels: width × height of one image, read from the image's header before its pixels are
      decoded (a 14000×14000 one-colour PNG is a few hundred kB but 588 MB decoded). The default
      admits 24 MP photos; a 48 MP phone photo needs a higher value (and the memory to match).
    fetch_remote_images: whether http(s) image URLs are fetched (and anonymized) or refused. A
      fetching proxy makes requests wherever its clients point it, the local network included:
      enable it only for clients you trust.
    remote_timeout_s: the whole fetch of one remote image, connection to last byte.
    remote_max_bytes: one fetched image, checked on Content-Length and while reading.
    upstream_timeout_s: waiting for the upstream (a long completion can take minutes).
    workers: requests whose images are anonymized at the same time (the others wait their turn).
      The anonymizers use every core for one image already; running more at once than there are
      cores only multiplies the memory of images in flight.
  """

  max_body_bytes: int = 64 * 1024 * 1024
  max_images: int = 32
  max_image_bytes: int = 20 * 1024 * 1024
  max_pixels: int = 25_000_000
  fetch_remote_images: bool = False
  remote_timeout_s: float = 10.0
  remote_max_bytes: int = 20 * 1024 * 1024
  upstream_timeout_s: float = 600.0
  workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.type != "bool" and not value > 0:
        raise ValueError(f"{field.name} must be positive, got {value}")
