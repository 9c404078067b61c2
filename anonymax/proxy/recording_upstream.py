"""A stand-in for an OpenAI-compatible upstream: it records what it receives and answers in
OpenAI's format (streamed as server-sent events when asked), after a fixed latency.

For the proxy's tests (what exactly reached the upstream: headers, body, images) and its latency
benchmark (an upstream whose own time is known). The model name steers it: ``"status-<code>"``
answers with that HTTP status and an OpenAI error body.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# What a streamed answer is made of, one chunk each (the tests check they arrive in order).
STREAM_PIECES = ("The ", "image ", "is ", "anonymized.")


@dataclasses.dataclass(frozen=True)
class Received:
  """One request as the upstream saw it: its headers (lower-case names) and its JSON body."""

  headers: dict[str, str]
  body: dict[str, Any]

  def image_urls(self) -> list[str]:
    """The URLs of its image parts, in order."""
    return [
      part["image_url"]["url"]
      for message in self.body.get("messages", [])
      if isinstance(message.get("content"), list)
      for part in message["content"]
      if part.get("type") == "image_url"
    ]


class RecordingUpstream:
  """The upstream; `app()` is its Starlette app (serve it with `background.serve_in_thread`).

  Args:
    latency_s: how long it takes to answer (before the first byte).
    record: keep every request in `received` (the benchmark turns it off to save memory).
  """

  def __init__(self, latency_s: float = 0.0, record: bool = True):
    self.latency_s = latency_s
    self.record = record
    self.received: list[Received] = []

  def app(self) -> Starlette:
    return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

  async def _chat(self, request: Request) -> Response:
    body = json.loads(await request.body())
    if self.record:
      self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
    if self.latency_s:
      await asyncio.sleep(self.latency_s)
    model = str(body.get("model", ""))
    if model.startswith("status-"):
      status = int(model.removeprefix("status-"))
      error = {
        "message": f"upstream says {status}",
        "type": "test_error",
        "param": None,
        "code": "test",
      }
      return JSONResponse({"error": error}, status_code=status)
    created = int(time.time())
    if body.get("stream"):
      return StreamingResponse(_events(model, created), media_type="text/event-stream")
    return JSONResponse(
      {
        "id": "chatcmpl-recording",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
          {
            "index": 0,
            "message": {"role": "assistant", "content": "".join(STREAM_PIECES)},
            "finish_reason": "stop",
            "logprobs": None,
          }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(STREAM_PIECES), "total_tokens": 5},
      }
    )


async def _events(model: str, created: int):
  def chunk(delta, finish=None):
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    data = {
      "id": "chatcmpl-recording",
      "object": "chat.completion.chunk",
      "created": created,
      "model": model,
      "choices": [choice],
    }
    return f"data: {json.dumps(data)}\n\n".encode()

  yield chunk({"role": "assistant", "content": ""})
  for piece in STREAM_PIECES:
    await asyncio.sleep(0.01)  # separate network writes, so the relay is tested chunk by chunk
    yield chunk({"content": piece})
  yield chunk({}, "stop")
  yield b"data: [DONE]\n\n"
