"""The anonymizing proxy as a Starlette app: OpenAI's chat-completions API, images anonymized.

  POST /v1/chat/completions   every image anonymized by the method, the rest sent on unchanged
  GET  /healthz               {"status": "ok", "method": <name>}
  GET  /metrics               counters and the added latency per image (`metrics.Metrics`)

A request is checked in the order that costs least: the client's token (before a byte of the
body is read), the body's declared length (also before reading), its length as it arrives, the
JSON and its content parts, the number of images, then each image (size from the URL, pixels
from the image's header, then decoding). Any refusal is a 4xx in OpenAI's error format and sends
nothing upstream. The log has one line per request (its size, image count and status): never its
content, its images or any key.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import time
import traceback

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from anonymax.proxy import anonymizing, remote, request
from anonymax.proxy.errors import ProxyError, error_response
from anonymax.proxy.limits import Limits
from anonymax.proxy.metrics import Metrics
from anonymax.proxy.upstream import Upstream

log = logging.getLogger("anonymax.proxy")


def create_app(
  method: anonymizing.Method,
  *,
  upstream: str,
  upstream_key: str,
  token: str | None = None,
  limits: Limits = Limits(),  # noqa: B008 — frozen, so one shared default is safe.
) -> Starlette:
  """The proxy app.

  Args:
    method: anonymizes uint8 images [N, H, W, 3] (e.g. `anonymax.methods.load_method(...)`).
    upstream: the upstream API's base URL, e.g. "https://api.openai.com/v1".
    upstream_key: the key sent upstream as ``Authorization: Bearer`` ("" sends none).
    token: if set, clients must send ``Authorization: Bearer <token>`` (401 otherwise).
    limits: what one request may ask (`Limits`).

  The app's state holds `metrics` (a `Metrics`) and `upstream` (an `Upstream`).
  """
  metrics = Metrics()
  chat = _Chat(
    method,
    Upstream(upstream, upstream_key, timeout_s=limits.upstream_timeout_s),
    token,
    limits,
    metrics,
  )

  async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok", "method": method.name})

  async def metrics_endpoint(req: Request) -> Response:
    try:
      chat.authorize(req)
    except ProxyError as e:
      return e.response()
    return JSONResponse(metrics.snapshot())

  @contextlib.asynccontextmanager
  async def lifespan(_app):
    try:
      yield
    finally:
      await chat.aclose()

  app = Starlette(
    routes=[
      Route("/v1/chat/completions", chat.handle, methods=["POST"]),
      Route("/healthz", healthz, methods=["GET"]),
      Route("/metrics", metrics_endpoint, methods=["GET"]),
    ],
    exception_handlers={HTTPException: _http_error},
    lifespan=lifespan,
  )
  app.state.metrics = metrics
  app.state.upstream = chat.upstream
  return app


async def _http_error(_: Request, exc: Exception) -> Response:
  # Starlette's own 404 and 405, in the same format as every other error.
  assert isinstance(exc, HTTPException)
  response = error_response(
    exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None
  )
  response.headers.update(exc.headers or {})  # e.g. a 405's Allow
  return response


class _Chat:
  """POST /v1/chat/completions, and the state it needs."""

  def __init__(
    self, method, upstream: Upstream, token: str | None, limits: Limits, metrics: Metrics
  ):
    self.method = method
    self.upstream = upstream
    self.token = token
    self.limits = limits
    self.metrics = metrics
    self.remote = remote.client(limits) if limits.fetch_remote_images else None
    self._workers: anyio.CapacityLimiter | None = None  # made on the event loop, on first use

  async def _in_worker(self, func, *args):
    if self._workers is None:
      self._workers = anyio.CapacityLimiter(self.limits.workers)
    return await anyio.to_thread.run_sync(functools.partial(func, *args), limiter=self._workers)

  async def aclose(self) -> None:
    await self.upstream.aclose()
    if self.remote is not None:
      await self.remote.aclose()

  def authorize(self, req: Request) -> None:
    if self.token is None:
      return
    scheme, _, given = req.headers.get("authorization", "").partition(" ")
    # A constant-time comparison: the time a refusal takes says nothing about the token.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
      given.strip().encode(), self.token.encode()
    ):
      raise ProxyError(401, "missing or wrong bearer token", code="unauthorized")

  async def handle(self, req: Request) -> Response:
    self.metrics.requests += 1
    size, images = 0, 0
    try:
      self.authorize(req)
      raw = await self._read_body(req)
      size = len(raw)
      started = time.perf_counter()
      body, refs = await run_in_threadpool(request.parse, raw)
      images = len(refs)
      if images > self.limits.max_images:
        raise ProxyError(
          413,
          f"{images} images, over the limit of {self.limits.max_images}",
          code="too_many_images",
          param="messages",
        )
      fetched = {k: await self._fetch(ref) for k, ref in enumerate(refs) if not ref.is_data}
      payload = await self._in_worker(
        anonymizing.anonymize_request, body, refs, fetched, self.method, self.limits
      )
      self.metrics.anonymized(images, time.perf_counter() - started)
      response = await self.upstream.send(payload, stream=body.get("stream") is True)
      if response.status_code >= 400:
        self.metrics.upstream_errors[f"http_{response.status_code}"] += 1
    except ProxyError as e:
      if e.type == "upstream_error":
        self.metrics.upstream_errors[e.code] += 1
      else:
        self.metrics.rejected[e.code] += 1
      response = e.response()
    except ClientDisconnect:
      self.metrics.rejected["client_disconnected"] += 1
      response = error_response(400, "the client went away", code="client_disconnected")
    except Exception as e:  # noqa: BLE001 — a bug must not drop the connection
      # Where it happened, but not the exception's message, which could quote request content.
      where = "".join(traceback.format_tb(e.__traceback__))
      log.error("internal error (%s) at\n%s", type(e).__name__, where)
      response = error_response(
        500, "internal error in the anonymizing proxy", code="internal_error", type="server_error"
      )
    log.info("chat/completions bytes=%d images=%d status=%d", size, images, response.status_code)
    return response

  async def _read_body(self, req: Request) -> bytes:
    """The body, refused (413) as soon as it is known to be over the limit: from Content-Length
    before reading anything, else (chunked) as the chunks arrive."""
    limit = self.limits.max_body_bytes
    too_large = ProxyError(413, f"the request body is over {limit} bytes", code="body_too_large")
    length = req.headers.get("content-length")
    if length is not None:
      if not length.strip().isdigit():
        raise ProxyError(400, "invalid Content-Length", code="invalid_request")
      if int(length) > limit:
        raise too_large
    chunks, total = [], 0
    async for chunk in req.stream():
      total += len(chunk)
      if total > limit:
        raise too_large
      chunks.append(chunk)
    return b"".join(chunks)

  async def _fetch(self, ref: request.ImageRef) -> bytes:
    if not ref.is_remote:
      raise ProxyError(
        400,
        f"{ref.param}: image URLs must be data: or http(s): URLs",
        code="invalid_image_url",
        param=ref.param,
      )
    if self.remote is None:
      raise ProxyError(
        400,
        f"{ref.param}: remote image URLs are not fetched by this proxy (send the image as a data URL)",
        code="remote_image_refused",
        param=ref.param,
      )
    return await remote.fetch(self.remote, ref.url, limits=self.limits, param=ref.param)
