"""A local OpenAI-compatible chat-completions server in front of any answerer.

It serves ``POST /v1/chat/completions`` over real HTTP, so the `openai` oracle is tested end to end
(client, retries, JSON) without the internet, and the synthetic benchmark's reference black box can
be put behind the same interface a GPT-4o or vLLM deployment has:

  OPENAI_API_KEY=local python launch/reference_server.py --port 8000 --latency-ms 200
  # then train with the config variant oracle=openai,base_url=http://127.0.0.1:8000/v1

(`launch/reference_server.py` builds the reference black box and calls `serve`.)

An answerer is any object with ``answer(visuals_uint8, prompts, top_k) -> list[list[(text,
logprob)]]`` (the top answers, best first), e.g. `reference.ReferenceOracle` or `ColourAnswerer`.
The server decodes the data-URL images of a request (one image → [1, H, W, 3], several → a clip
[1, T, H, W, 3]), answers with the best answer, and returns per-token log-probabilities with
tokens = whitespace words: token i has logprob log M(w_{≤i}) − log M(w_{<i}) and top_logprobs the
alternatives for word i, where M(prefix) is the total probability of the answers starting with
that prefix (M of the empty prefix is 1).

For tests it can add a fixed latency, check ``Authorization: Bearer``, record the decoded images
it received, and inject faults by request number (0-based, in arrival order): ``"429"`` (with
``Retry-After``), ``"500"``, ``"hang"`` (answer only after `hang_s`, past the client's timeout),
``"malformed"`` (a 200 with broken JSON) and ``"nan"`` (every log-probability NaN).
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import http.server
import io
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

FAULTS = ("429", "500", "hang", "malformed", "nan")
# ChatServer's limits on what one client can make it hold (50 Mpixel = 150 MB decoded), and
# OpenAI's limits on the options.
MAX_BODY_BYTES = 32 * 2**20
MAX_IMAGE_PIXELS = 50_000_000
TIMEOUT_S = 30.0
MAX_TOKENS = 131_072
MAX_TOP_LOGPROBS = 20
DEFAULT_MAX_TOKENS = 16
_LINGER_S = 2.0  # see `_Handler._linger`
_ROUTES = ("/v1/chat/completions", "/chat/completions")


class ColourAnswerer:
  """A tiny deterministic answerer: the dominant colour of the visual.

  log p(c | x) = log_softmax(sharpness · mean_rgb(x))_c for c in ("red", "green", "blue"), where
  mean_rgb averages each channel over every pixel (and frame) in [0, 1]. The prompt is ignored.
  """

  vocab = ("red", "green", "blue")

  def __init__(self, sharpness: float = 8.0):
    self.sharpness = float(sharpness)

  def answer(self, visuals: np.ndarray, prompts: Sequence[str], top_k: int = 5):
    """Per sample of uint8 [N, H, W, 3] or [N, T, H, W, 3] `visuals` (the N `prompts` are
    ignored): its `top_k` (colour, log-probability) pairs, best first."""
    visuals = np.asarray(visuals)
    if visuals.dtype != np.uint8 or visuals.shape[-1] != 3 or len(visuals) != len(prompts):
      raise ValueError(f"visuals: {visuals.dtype} {visuals.shape} for {len(prompts)} prompts")
    means = visuals.reshape(len(visuals), -1, 3).astype(np.float64).mean(axis=1) / 255.0
    logits = self.sharpness * means
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    out = []
    for row in logp:
      order = np.argsort(-row, kind="stable")[:top_k]
      out.append([(self.vocab[j], float(row[j])) for j in order])
    return out


class RequestError(ValueError):
  """A client's mistake, answered with `status` and OpenAI's error body naming `param`."""

  def __init__(self, message: str, param: str | None = "messages", status: int = 400):
    super().__init__(message)
    self.param, self.status = param, status


def _open_image(url) -> Image.Image:
  """The image of a ``data:image/...;base64,...`` URL, its header read but no pixel decoded."""
  head, sep, payload = url.partition(",") if isinstance(url, str) else ("", "", "")
  if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
    raise RequestError(f"image_url: not a base64 image data URL ({head[:40]!r})")
  try:
    raw = base64.b64decode(payload, validate=True)
  except (binascii.Error, ValueError):
    raise RequestError("image_url: cannot decode the image (invalid base64)") from None
  try:
    return Image.open(io.BytesIO(raw))
  except Image.DecompressionBombError as e:
    raise RequestError(f"image_url: refused, {e}", status=413) from None
  except Exception as e:  # noqa: BLE001 — Pillow's format plugins raise many kinds for bad bytes.
    raise RequestError(f"image_url: cannot decode the image ({type(e).__name__})") from None


def _decode(images: Sequence[Image.Image], max_pixels: int) -> list[np.ndarray]:
  """uint8 [H, W, 3] of each opened image; refused (413) if they have over `max_pixels` in all."""
  # Checked on the headers, before any pixel is decoded: a few hundred KB of PNG can declare
  # 14000×14000 pixels (600 MB decoded).
  total = sum(im.size[0] * im.size[1] for im in images)
  if total > max_pixels:
    what = "×".join(map(str, images[0].size)) if len(images) == 1 else f"{len(images)} images"
    message = f"image_url: {what} ({total} pixels), over the limit of {max_pixels} per request"
    raise RequestError(message, status=413)
  try:
    return [np.asarray(im.convert("RGB"), np.uint8) for im in images]
  except Exception as e:  # noqa: BLE001 — e.g. truncated data, found only when decoding.
    raise RequestError(f"image_url: cannot decode the image ({type(e).__name__})") from None


def decode_data_url(url: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
  """A ``data:image/...;base64,...`` URL → uint8 [H, W, 3]; RequestError (a ValueError) if the
  URL, its base64 or its image is broken, or the image has more than `max_pixels` pixels."""
  with _open_image(url) as image:
    return _decode([image], max_pixels)[0]


def parse_request(body: dict, max_pixels: int = MAX_IMAGE_PIXELS):
  """(prompt, visuals [1, H, W, 3] or [1, T, H, W, 3], all text parts) of a chat request.

  The prompt is the first text part of the last user message (the question); later text parts
  (e.g. the listed options of a multiple-choice question) are returned but not used as the prompt.
  The images may have `max_pixels` pixels in all. A malformed request raises RequestError.
  """
  messages = body.get("messages") if isinstance(body, dict) else None
  if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
    raise RequestError("messages: missing, or not a list of message objects")
  users = [m for m in messages if m.get("role") == "user"]
  if not users:
    raise RequestError("messages: no user message")
  content = users[-1].get("content")
  content = [{"type": "text", "text": content}] if isinstance(content, str) else content
  if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
    raise RequestError("messages: the user message's content is not a string or a list of parts")
  texts = [p.get("text") for p in content if p.get("type") == "text"]
  urls = [p.get("image_url") for p in content if p.get("type") == "image_url"]
  urls = [u.get("url") if isinstance(u, dict) else None for u in urls]
  if not all(isinstance(t, str) for t in texts):
    raise RequestError("messages: a text part's text is not a string")
  if not texts or not urls:
    raise RequestError("messages: the user message needs a text part and at least one image")
  with contextlib.ExitStack() as opened:
    images = [opened.enter_context(_open_image(url)) for url in urls]
    frames = _decode(images, max_pixels)
  if len({f.shape for f in frames}) != 1:
    raise RequestError("image_url: frames of one request have different sizes")
  visuals = frames[0][None] if len(frames) == 1 else np.stack(frames)[None]
  return texts[0], visuals, texts


def _optional_int(body: dict, field: str, low: int, high: int) -> int | None:
  value = body.get(field)
  if value is not None and (type(value) is not int or not low <= value <= high):
    raise RequestError(f"{field}={value!r}: must be an integer in [{low}, {high}]", field)
  return value


def parse_options(raw: bytes) -> tuple[dict, int, bool, int]:
  """(the JSON object, max_tokens, logprobs, top_logprobs) of a request body, with OpenAI's
  defaults and limits; RequestError naming the field that breaks them."""
  try:
    body = json.loads(raw)
  except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, absurd nesting
    raise RequestError(f"request body: not valid JSON ({type(e).__name__}: {e})", None) from None
  if not isinstance(body, dict):
    raise RequestError(f"request body: a JSON {type(body).__name__}, want an object", None)
  max_tokens = _optional_int(body, "max_tokens", 1, MAX_TOKENS)
  max_completion = _optional_int(body, "max_completion_tokens", 1, MAX_TOKENS)
  top_logprobs = _optional_int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
  if (logprobs := body.get("logprobs")) is not None and not isinstance(logprobs, bool):
    raise RequestError(f"logprobs={logprobs!r}: must be true or false", "logprobs")
  max_tokens = max_tokens or max_completion or DEFAULT_MAX_TOKENS
  return body, max_tokens, bool(logprobs), top_logprobs or 0


def _logsumexp(values: Sequence[float]) -> float:
  m = max(values)
  if not math.isfinite(m):
    return m
  return m + math.log(sum(math.exp(v - m) for v in values))


def token_logprobs(answers: Sequence[tuple[str, float]], max_tokens: int, top_k: int):
  """Content (best answer, cut to `max_tokens` words) and its per-word logprobs entries."""
  if not answers:
    return "", []
  words = [(text.split(), lp) for text, lp in answers]
  best = words[0][0][:max_tokens]
  entries = []
  prev = 0.0  # log M(empty prefix)
  for i, word in enumerate(best):
    prefix = best[:i]
    alternatives = collections.defaultdict(list)
    for w, lp in words:
      if w[:i] == prefix and len(w) > i:
        alternatives[w[i]].append(lp)
    mass = {k: _logsumexp(v) for k, v in alternatives.items()}
    top = sorted(mass.items(), key=lambda kv: -kv[1])[:top_k]
    token = word if i == 0 else " " + word
    entries.append(
      {
        "token": token,
        "logprob": mass[word] - prev,
        "top_logprobs": [
          {"token": w if i == 0 else " " + w, "logprob": lp - prev} for w, lp in top
        ],
      }
    )
    prev = mass[word]
  return " ".join(best), entries


class ChatServer(http.server.ThreadingHTTPServer):
  """The HTTP server; its attributes are the test knobs and records (see the module docstring).

  It bounds what a client can make it hold: `max_body_bytes` (checked on ``Content-Length``,
  after the API key and before reading), `max_image_pixels` (a request's images in all, checked
  on their headers before decoding) and `timeout_s` (each socket operation). A client's mistake
  gets a 4xx in OpenAI's error format.

  Attributes:
    received: one dict per decoded request, in arrival order: "n" (request number), "prompt",
      "texts", "visuals" (uint8 [1, ...]), "fault" (the injected fault or None), "body" (the JSON).
    arrivals: (request number, time.monotonic()) of every request.
    max_in_flight: the most requests that were being handled at once.
  """

  daemon_threads = True

  def __init__(
    self,
    address,
    answerer,
    *,
    api_key: str | None = None,
    latency_s: float = 0.0,
    faults: Mapping[int, str] | None = None,
    retry_after: float = 1.0,
    hang_s: float = 5.0,
    image_tokens: int = 85,
    answer_pool: int = 20,
    record: bool = True,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    timeout_s: float = TIMEOUT_S,
  ):
    faults = dict(faults or {})
    for n, fault in faults.items():
      if fault not in FAULTS:
        raise ValueError(f"faults[{n}]={fault!r}: must be one of {FAULTS}")
    limits = dict(
      max_body_bytes=max_body_bytes, max_image_pixels=max_image_pixels, timeout_s=timeout_s
    )
    if bad := [f"{k}={v}" for k, v in limits.items() if not v > 0]:
      raise ValueError(f"{', '.join(bad)}: must be > 0")
    super().__init__(address, _Handler)  # binds the port: only once the options are valid
    self.answerer = answerer
    self.api_key = api_key
    self.latency_s = float(latency_s)
    self.faults = faults
    self.retry_after = retry_after
    self.hang_s = float(hang_s)
    self.image_tokens = int(image_tokens)
    self.answer_pool = int(answer_pool)
    self.record = record
    self.max_body_bytes = int(max_body_bytes)
    self.max_image_pixels = int(max_image_pixels)
    self.timeout_s = float(timeout_s)
    self.received: list[dict] = []
    self.arrivals: list[tuple[int, float]] = []
    self._lock = threading.Lock()
    self._count = 0
    self._in_flight = 0
    self.max_in_flight = 0
    # Answerers (a jitted network) are not assumed thread-safe: one answer at a time.
    self._answer_lock = threading.Lock()

  def next_request(self) -> tuple[int, str | None]:
    with self._lock:
      n = self._count
      self._count += 1
      self.arrivals.append((n, time.monotonic()))
    return n, self.faults.get(n)

  def enter(self) -> None:
    with self._lock:
      self._in_flight += 1
      self.max_in_flight = max(self.max_in_flight, self._in_flight)

  def leave(self) -> None:
    with self._lock:
      self._in_flight -= 1

  def close(self) -> None:
    """Stops serving and releases the port."""
    self.shutdown()
    self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
  server: ChatServer
  protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections
  # Headers and body go out in separate writes; with Nagle's algorithm the body would wait for
  # the client's delayed ACK (~40 ms per response on Linux).
  disable_nagle_algorithm = True

  def setup(self):
    # StreamRequestHandler gives the socket this timeout: a stalled client frees its thread.
    self.timeout = self.server.timeout_s
    super().setup()

  def log_message(self, format, *args):  # noqa: A002 — the base class's signature.
    log.debug("%s " + format, self.address_string(), *args)

  def _send(self, code: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    # Fixed latency = time from the request's arrival to its answer; the decoding and answering
    # above happen inside it, as they would on a remote server.
    wait = getattr(self, "_respond_at", 0.0) - time.monotonic()
    if wait > 0:
      time.sleep(wait)
    try:
      self.send_response(code)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(body)))
      for k, v in (headers or {}).items():
        self.send_header(k, v)
      if self.close_connection:
        self.send_header("Connection", "close")
      self.end_headers()
      self.wfile.write(body)
    except OSError:  # the client gave up (e.g. after its timeout): nothing to answer.
      self.close_connection = True

  def _error(self, code: int, message: str, headers=None, *, kind=None, param=None, err=None):
    """Sends OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    kind = kind or ("server_error" if code >= 500 else "invalid_request_error")
    error = {"message": message, "type": kind, "param": param, "code": err}
    self._send(code, json.dumps({"error": error}).encode(), headers)

  def _refuse(self, code: int, message: str, **kwargs) -> None:
    # Sent before the body is read: the connection then closes, or the unread body would be
    # taken for the next request.
    self.close_connection = True
    self._error(code, message, **kwargs)
    self._linger()

  def _linger(self) -> None:
    # Closing a socket whose receive buffer holds unread bytes makes the kernel send a reset,
    # which can destroy the response before the client reads it. So stop writing, then discard
    # what the client still sends, for at most _LINGER_S.
    deadline = time.monotonic() + _LINGER_S
    with contextlib.suppress(OSError):  # the timeout, or the client has gone
      self.connection.shutdown(socket.SHUT_WR)
      while (left := deadline - time.monotonic()) > 0:
        self.connection.settimeout(left)
        if not self.connection.recv(1 << 16):
          break

  def _admit(self) -> tuple[int, str | None, int] | None:
    """(request number, fault, body length), or None once a refusal is sent; reads no body."""
    srv = self.server
    self._respond_at = time.monotonic() + srv.latency_s
    if self.path.rstrip("/") not in _ROUTES:
      return self._refuse(404, f"no route {self.path}", err="unknown_url")
    n, fault = srv.next_request()
    if srv.api_key is not None and self.headers.get("Authorization") != f"Bearer {srv.api_key}":
      return self._refuse(401, "invalid or missing API key", err="invalid_api_key")
    lengths = self.headers.get_all("Content-Length") or []
    if not lengths:
      return self._refuse(411, "a Content-Length header is required")
    if len(set(lengths)) != 1 or not lengths[0].strip().isdecimal():
      return self._refuse(400, f"Content-Length: {', '.join(lengths)[:40]!r} is not a length")
    if (length := int(lengths[0])) > srv.max_body_bytes:
      return self._refuse(413, f"body of {length} bytes, over the limit of {srv.max_body_bytes}")
    return n, fault, length

  def _read_body(self, length: int) -> bytes | None:
    """The body, or None if the client stops sending it (a 408 is sent) or closes the connection."""
    try:
      raw = self.rfile.read(length)  # each recv waits at most timeout_s
    except TimeoutError:
      self.close_connection = True
      return self._error(408, f"the request body stopped arriving for {self.server.timeout_s:g} s")
    if len(raw) < length:  # the client closed the connection mid-body: nobody to answer
      self.close_connection = True
      return None
    return raw

  def do_POST(self):  # noqa: N802 — the base class's naming.
    if (admitted := self._admit()) is None:
      return
    n, fault, length = admitted
    raw = self._read_body(length)
    if raw is None:
      return
    srv = self.server
    srv.enter()
    try:
      self._answer(raw, n, fault)
    except Exception:  # noqa: BLE001 — a bug here is a 500, not a dropped connection.
      log.exception("request %d failed", n)
      self._error(500, "internal error")
    finally:
      srv.leave()

  def _answer(self, raw: bytes, n: int, fault: str | None) -> None:
    srv = self.server
    if fault == "429":
      headers = {"Retry-After": str(srv.retry_after)}
      return self._error(429, "rate limited", headers, kind="requests", err="rate_limit_exceeded")
    if fault == "500":
      return self._error(500, "internal error")
    if fault == "hang":
      time.sleep(srv.hang_s)
    try:
      body, max_tokens, want_logprobs, top_k = parse_options(raw)
      prompt, visuals, texts = parse_request(body, srv.max_image_pixels)
    except RequestError as e:
      return self._error(e.status, str(e), param=e.param)
    if srv.record:
      record = dict(n=n, prompt=prompt, texts=texts, visuals=visuals, fault=fault, body=body)
      with srv._lock:
        srv.received.append(record)
    top_k = top_k if want_logprobs else 0
    try:
      with srv._answer_lock:
        answers = srv.answerer.answer(visuals, [prompt], max(top_k, srv.answer_pool))[0]
    except ValueError as e:
      return self._error(400, f"cannot answer: {e}")
    except Exception as e:  # noqa: BLE001 — a crashed answerer is a 500, as on a real server.
      log.exception("answerer failed")
      return self._error(500, f"answerer failed: {type(e).__name__}")
    content, entries = token_logprobs(answers, max_tokens, max(top_k, 1))
    if fault == "nan":
      for e in entries:
        e["logprob"] = float("nan")
        for t in e["top_logprobs"]:
          t["logprob"] = float("nan")
    for e in entries:
      e["top_logprobs"] = e["top_logprobs"][:top_k]
    n_images = visuals.shape[1] if visuals.ndim == 5 else 1
    asked = sum(len(t.split()) for t in texts) + srv.image_tokens * n_images
    message = {"role": "assistant", "content": content}
    logprobs = {"content": entries} if want_logprobs else None
    choice = dict(index=0, message=message, logprobs=logprobs, finish_reason="stop")
    used = len(entries)
    usage = dict(prompt_tokens=asked, completion_tokens=used, total_tokens=asked + used)
    response = {
      "id": f"chatcmpl-{n}",
      "object": "chat.completion",
      "created": int(time.time()),
      "model": body.get("model", ""),
      "choices": [choice],
      "usage": usage,
    }
    if fault == "malformed":
      return self._send(200, json.dumps(response).encode()[:40])
    self._send(200, json.dumps(response).encode())  # NaN is written as NaN, as some servers do.


def serve(answerer, host: str = "127.0.0.1", port: int = 0, **kwargs) -> tuple[ChatServer, str]:
  """Starts a `ChatServer` on a daemon thread; returns it and its ``http://host:port/v1`` URL.

  Args:
    answerer: an object with ``answer(visuals_uint8, prompts, top_k)``.
    host: the address to bind; loopback by default (nothing is exposed to the network).
    port: 0 picks a free port.
    **kwargs: `ChatServer` options (api_key, latency_s, faults, retry_after, hang_s, ...).

  Returns:
    (server, base_url); stop it with ``server.close()``.
  """
  server = ChatServer((host, port), answerer, **kwargs)
  # A short poll interval makes `close()` quick (shutdown waits for the next poll).
  threading.Thread(
    target=server.serve_forever, args=(0.05,), name="chat-server", daemon=True
  ).start()
  bound_host, bound_port = server.server_address[:2]
  return server, f"http://{bound_host}:{bound_port}/v1"
