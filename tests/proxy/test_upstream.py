"""The upstream's answers come back as it sent them: errors with their status and body, an
unreachable upstream as a 502 in OpenAI's format."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from anonymax import proxy
from tests.proxy import helpers


def test_upstream_errors_are_passed_back(make_proxy, client_for, upstream):
  running = make_proxy()
  client = client_for(running)
  with pytest.raises(openai.RateLimitError) as e:
    client.chat.completions.create(
      model="status-429", messages=helpers.chat(helpers.png_url(helpers.photo()))
    )
  assert e.value.status_code == 429 and e.value.body["message"] == "upstream says 429"
  with pytest.raises(openai.InternalServerError):  # a streamed request's error too
    client.chat.completions.create(
      model="status-500", messages=[{"role": "user", "content": "hello"}], stream=True
    )
  assert len(upstream.received) == 2
  metrics = httpx.get(
    running.url + "/metrics", headers={"Authorization": f"Bearer {helpers.TOKEN}"}
  ).json()
  assert metrics["upstream_errors"] == {"total": 2, "by_reason": {"http_429": 1, "http_500": 1}}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.parametrize("stream", [False, True])
def test_an_unreachable_upstream_is_a_502(serve, client_for, stream):
  dead = f"http://127.0.0.1:{_free_port()}/v1"
  running = serve(
    proxy.create_app(helpers.INVERT, upstream=dead, upstream_key=helpers.UPSTREAM_KEY)
  )
  with pytest.raises(openai.APIStatusError) as e:
    client_for(running).chat.completions.create(
      model="m", messages=[{"role": "user", "content": "hello"}], stream=stream
    )
  assert e.value.status_code == 502
  assert e.value.body == {
    "message": "the upstream could not be reached (ConnectError)",
    "type": "upstream_error",
    "param": None,
    "code": "upstream_unreachable",
  }


def test_a_client_leaving_mid_stream_closes_the_upstreams_stream(serve):
  seen = {"sent": 0, "closed": False}

  async def chat(request):
    await request.body()

    async def events():
      try:
        for i in range(100):  # 5 s in all, unless the reader leaves
          await asyncio.sleep(0.05)
          seen["sent"] += 1
          yield f"data: {json.dumps({'i': i})}\n\n".encode()
      finally:
        seen["closed"] = True

    return StreamingResponse(events(), media_type="text/event-stream")

  slow = serve(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]))
  running = serve(proxy.create_app(helpers.INVERT, upstream=slow.url + "/v1", upstream_key="k"))
  body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
  with httpx.stream("POST", running.url + "/v1/chat/completions", json=body) as response:
    chunks = response.iter_bytes()
    assert next(chunks) == b'data: {"i": 0}\n\n'
  deadline = time.monotonic() + 3
  while not seen["closed"] and time.monotonic() < deadline:
    time.sleep(0.02)
  assert seen["closed"] and seen["sent"] < 50
  assert httpx.get(running.url + "/healthz").status_code == 200
