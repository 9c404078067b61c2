"""Remote image URLs, fetched (only when the operator allows it) under size and time limits.

The fetch asks for the image unencoded and counts the bytes as they arrive, so neither a lying
Content-Length nor a compression bomb can make the proxy hold more than `remote_max_bytes`; the
whole fetch, redirects included, must end within `remote_timeout_s`.
"""

from __future__ import annotations

import anyio
import httpx

from anonymax.proxy.errors import ProxyError
from anonymax.proxy.limits import Limits

MAX_REDIRECTS = 3


def client(limits: Limits) -> httpx.AsyncClient:
  """The client remote images are fetched with (one per app, closed with it)."""
  return httpx.AsyncClient(
    timeout=httpx.Timeout(limits.remote_timeout_s),
    follow_redirects=True,
    max_redirects=MAX_REDIRECTS,
    headers={"Accept": "image/*", "Accept-Encoding": "identity"},
  )


async def fetch(http: httpx.AsyncClient, url: str, *, limits: Limits, param: str) -> bytes:
  """The encoded image at an http(s) `url`.

  Raises:
    ProxyError: 400 when it cannot be fetched (an error status, a network error, a timeout),
      413 when it is over `limits.remote_max_bytes`.
  """
  max_bytes = limits.remote_max_bytes

  def failed(why: str) -> ProxyError:
    return ProxyError(
      400, f"{param}: the image could not be fetched ({why})", code="invalid_image_url", param=param
    )

  too_large = ProxyError(
    413, f"{param}: the image is over {max_bytes} bytes", code="image_too_large", param=param
  )
  try:
    with anyio.fail_after(limits.remote_timeout_s):
      async with http.stream("GET", url) as response:
        if response.status_code != 200:
          raise failed(f"HTTP {response.status_code}")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes:
          raise too_large
        data = bytearray()
        async for chunk in response.aiter_raw():
          data += chunk
          if len(data) > max_bytes:
            raise too_large
        return bytes(data)
  except TimeoutError:
    raise failed(f"no answer within {limits.remote_timeout_s:g} s") from None
  except httpx.TooManyRedirects:
    raise failed("too many redirects") from None
  except (httpx.HTTPError, httpx.InvalidURL) as e:
    raise failed(type(e).__name__) from None
