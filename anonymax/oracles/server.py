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
import http.server
import io
import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

FAULTS = ("429", "500", "hang", "malformed", "nan")


class ColourAnswerer:
  """A tiny deterministic answerer: the dominant colour of the visual.

  log p(c | x) = log_softmax(sharpness · mean_rgb(x))_c for c in ("red", "green", "blue"), where
  mean_rgb averages each channel over every pixel (and frame) in [0, 1]. The prompt is ignored.
  """

  vocab = ("red", "green", "blue")

  def __init__(self, sharpness: float = 8.0):
    self.sharpness = float(sharpness)

  def answer(self, visuals: np.ndarray, prompts: Sequence[str], top_k: int = 5):
    """The `top_k` colours with their log-probabilities, best first, per sample.

    Args:
      visuals: uint8 [N, H, W, 3] or [N, T, H, W, 3].
      prompts: N prompts (ignored).
      top_k: answers per sample.

    Returns:
      N lists of (colour, log-probability).
    """
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


def decode_data_url(url: str) -> np.ndarray:
  """A ``data:image/...;base64,...`` URL → uint8 [H, W, 3]."""
  head, sep, payload = url.partition(",")
  if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
    raise ValueError(f"image_url: not a base64 image data URL ({head[:40]!r})")
  try:
    raw = base64.b64decode(payload, validate=True)
    with Image.open(io.BytesIO(raw)) as im:
      return np.asarray(im.convert("RGB"), np.uint8)
  except (binascii.Error, OSError) as e:
    raise ValueError(f"image_url: cannot decode the image ({type(e).__name__})") from None


def parse_request(body: dict) -> tuple[str, np.ndarray, list[str]]:
  """(prompt, visuals [1, H, W, 3] or [1, T, H, W, 3], all text parts) of a chat request.

  The prompt is the first text part of the last user message (the question); later text parts
  (e.g. the listed options of a multiple-choice question) are returned but not used as the prompt.
  """
  users = [m for m in body.get("messages", []) if m.get("role") == "user"]
  if not users:
    raise ValueError("messages: no user message")
  content = users[-1].get("content")
  if isinstance(content, str):
    content = [{"type": "text", "text": content}]
  texts = [p.get("text", "") for p in content if p.get("type") == "text"]
  urls = [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]
  if not texts or not urls:
    raise ValueError("messages: the user message needs a text part and at least one image")
  frames = [decode_data_url(u) for u in urls]
  if len({f.shape for f in frames}) != 1:
    raise ValueError("image_url: frames of one request have different sizes")
  visuals = frames[0][None] if len(frames) == 1 else np.stack(frames)[None]
  return texts[0], visuals, texts


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
  ):
    super().__init__(address, _Handler)
    faults = dict(faults or {})
    for n, fault in faults.items():
      if fault not in FAULTS:
        raise ValueError(f"faults[{n}]={fault!r}: must be one of {FAULTS}")
    self.answerer = answerer
    self.api_key = api_key
    self.latency_s = float(latency_s)
    self.faults = faults
    self.retry_after = retry_after
    self.hang_s = float(hang_s)
    self.image_tokens = int(image_tokens)
    self.answer_pool = int(answer_pool)
    self.record = record
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
      self.end_headers()
      self.wfile.write(body)
    except OSError:  # the client gave up (e.g. after its timeout): nothing to answer.
      self.close_connection = True

  def _error(self, code: int, message: str, headers=None) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}})
    self._send(code, body.encode(), headers)

  def do_POST(self):  # noqa: N802 — the base class's naming.
    self._respond_at = time.monotonic() + self.server.latency_s
    length = int(self.headers.get("Content-Length", 0))
    raw = self.rfile.read(length)
    if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
      return self._error(404, f"no route {self.path}")
    srv = self.server
    n, fault = srv.next_request()
    if srv.api_key is not None and self.headers.get("Authorization") != f"Bearer {srv.api_key}":
      return self._error(401, "invalid or missing API key")
    srv.enter()
    try:
      self._answer(raw, n, fault)
    finally:
      srv.leave()

  def _answer(self, raw: bytes, n: int, fault: str | None) -> None:
    srv = self.server
    if fault == "429":
      return self._error(429, "rate limited", {"Retry-After": str(srv.retry_after)})
    if fault == "500":
      return self._error(500, "internal error")
    if fault == "hang":
      time.sleep(srv.hang_s)
    try:
      body = json.loads(raw)
      prompt, visuals, texts = parse_request(body)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      return self._error(400, f"bad request: {e}")
    if srv.record:
      with srv._lock:
        srv.received.append(
          {
            "n": n,
            "prompt": prompt,
            "texts": texts,
            "visuals": visuals,
            "fault": fault,
            "body": body,
          }
        )
    want_logprobs = bool(body.get("logprobs"))
    top_k = int(body.get("top_logprobs") or 0) if want_logprobs else 0
    try:
      with srv._answer_lock:
        answers = srv.answerer.answer(visuals, [prompt], max(top_k, srv.answer_pool))[0]
    except ValueError as e:
      return self._error(400, f"cannot answer: {e}")
    except Exception as e:  # noqa: BLE001 — a crashed answerer is a 500, as on a real server.
      log.exception("answerer failed")
      return self._error(500, f"answerer failed: {type(e).__name__}")
    max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
    content, entries = token_logprobs(answers, max_tokens, max(top_k, 1))
    if fault == "nan":
      for e in entries:
        e["logprob"] = float("nan")
        for t in e["top_logprobs"]:
          t["logprob"] = float("nan")
    for e in entries:
      e["top_logprobs"] = e["top_logprobs"][:top_k]
    n_images = visuals.shape[1] if visuals.ndim == 5 else 1
    prompt_tokens = sum(len(t.split()) for t in texts) + srv.image_tokens * n_images
    response = {
      "id": f"chatcmpl-{n}",
      "object": "chat.completion",
      "created": int(time.time()),
      "model": body.get("model", ""),
      "choices": [
        {
          "index": 0,
          "message": {"role": "assistant", "content": content},
          "logprobs": {"content": entries} if want_logprobs else None,
          "finish_reason": "stop",
        }
      ],
      "usage": {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(entries),
        "total_tokens": prompt_tokens + len(entries),
      },
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
