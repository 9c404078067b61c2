"""The upstream chat-completions API: the anonymized request sent on, its answer relayed back.

The request carries the operator's key and nothing of the client's headers (its Authorization
holds the proxy's own token, not a key for the upstream). Status codes and error bodies come back
as the upstream sent them, with the headers a client acts on (rate limits, Retry-After, request
ids); a streamed answer is relayed chunk by chunk as it arrives.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import httpx
from starlette.responses import Response, StreamingResponse

from anonymax.proxy.errors import ProxyError

log = logging.getLogger(__name__)

_PASSED_HEADERS = ("content-type", "retry-after", "x-request-id")
_PASSED_PREFIXES = ("x-ratelimit-", "openai-")


def _passed(headers: httpx.Headers) -> dict[str, str]:
  # Length and encoding are left out: httpx has decoded the body and Starlette sets its own length.
  return {
    k: v
    for k, v in headers.items()
    if k.lower() in _PASSED_HEADERS or k.lower().startswith(_PASSED_PREFIXES)
  }


class Upstream:
  """POSTs to ``{base_url}/chat/completions`` with ``Authorization: Bearer <key>``.

  Args:
    base_url: the API's base URL, as the `openai` client's `base_url` (e.g. ".../v1").
    key: the upstream API key ("" sends no Authorization header, for local servers).
    timeout_s: how long to wait for the upstream (connecting is given at most 10 s of it).
    transport: an httpx transport (tests).
  """

  def __init__(
    self,
    base_url: str,
    key: str,
    *,
    timeout_s: float = 600.0,
    transport: httpx.AsyncBaseTransport | None = None,
  ):
    self.url = base_url.rstrip("/") + "/chat/completions"
    self._headers = {"Content-Type": "application/json"}
    if key:
      self._headers["Authorization"] = f"Bearer {key}"
    self._client = httpx.AsyncClient(
      timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
      limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
      transport=transport,
    )

  def __repr__(self) -> str:  # never the key
    return f"Upstream({self.url!r})"

  async def aclose(self) -> None:
    await self._client.aclose()

  async def send(self, body: bytes, *, stream: bool) -> Response:
    """The upstream's answer to `body` as a response for the client.

    Raises:
      ProxyError: 502 when the upstream cannot be reached, 504 when it does not answer in time.
    """
    headers = dict(self._headers)
    if stream:
      headers["Accept"] = "text/event-stream"
    request = self._client.build_request("POST", self.url, content=body, headers=headers)
    try:
      answer = await self._client.send(request, stream=True)
    except httpx.TimeoutException:
      raise _unreachable(504, "the upstream did not answer in time", "upstream_timeout") from None
    except httpx.HTTPError as e:
      raise _unreachable(
        502, f"the upstream could not be reached ({type(e).__name__})", "upstream_unreachable"
      ) from None
    is_events = answer.headers.get("content-type", "").startswith("text/event-stream")
    if not (stream and answer.status_code == 200 and is_events):
      try:
        content = await answer.aread()
      except httpx.HTTPError as e:
        raise _unreachable(
          502, f"the upstream's answer broke off ({type(e).__name__})", "upstream_unreachable"
        ) from None
      finally:
        await answer.aclose()
      return Response(content, status_code=answer.status_code, headers=_passed(answer.headers))
    return StreamingResponse(
      _relay(answer), status_code=200, headers=_passed(answer.headers), media_type=None
    )


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
  """The upstream's event stream, chunk by chunk; closed when done or when the client leaves."""
  try:
    async for chunk in answer.aiter_bytes():
      yield chunk
  except httpx.HTTPError as e:
    # The status line has gone out already: all that can be done is to end the stream.
    log.warning("upstream stream broke off (%s)", type(e).__name__)
  finally:
    # Shielded: when the client has gone, this runs inside a cancelled scope, and the upstream's
    # connection must still be closed (not left half-read in the pool).
    with anyio.CancelScope(shield=True):
      await answer.aclose()


def _unreachable(status: int, message: str, code: str) -> ProxyError:
  return ProxyError(status, message, code=code, type="upstream_error")
