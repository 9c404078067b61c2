"""Every malformed or oversized request is a 4xx in OpenAI's error format, and nothing of it goes
upstream; limits are enforced before the work they bound (reading, decoding)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from anonymax.proxy import Limits
from tests.proxy import helpers

AUTH = {"Authorization": f"Bearer {helpers.TOKEN}"}
PNG = helpers.encoded(helpers.photo(seed=0))


def _image(url) -> dict:
  return {
    "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
  }


def _with_part(part) -> dict:
  return {"messages": [{"role": "user", "content": [part]}]}


MALFORMED = {
  "bad JSON": b'{"messages": [',
  "not UTF-8": b'{"messages": "\xff\xfe"}',
  "NaN is not JSON": b'{"model": "m", "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}',
  "nested too deep": b"[" * 100_000 + b"]" * 100_000,
  "a JSON list": b"[1, 2]",
  "no messages": {"model": "m"},
  "empty messages": {"messages": []},
  "messages not a list": {"messages": "hello"},
  "a message not an object": {"messages": ["hello"]},
  "content a number": {"messages": [{"role": "user", "content": 5}]},
  "a part not an object": {"messages": [{"role": "user", "content": ["hello"]}]},
  "image_url a string": _with_part({"type": "image_url", "image_url": helpers.data_url(PNG)}),
  "url not a string": _with_part({"type": "image_url", "image_url": {"url": 3}}),
  "a file part": _with_part(
    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}
  ),
  "an unknown part": _with_part({"type": "input_image", "image_url": helpers.data_url(PNG)}),
  "data URL without data": _image("data:image/png;base64"),
  "data URL not base64": _image("data:image/png,rawbytes"),
  "invalid base64": _image("data:image/png;base64,@@@@"),
  "not an image type": _image("data:text/plain;base64,aGVsbG8="),
  "bytes that are no image": _image(helpers.data_url(b"certainly not a PNG")),
  "a truncated PNG": _image(helpers.data_url(PNG[: len(PNG) // 2])),
  "a format not accepted": _image(
    helpers.data_url(helpers.encoded(helpers.photo(), "TIFF"), "image/tiff")
  ),
  "a file URL": _image("file:///etc/passwd"),
  "an ftp URL": _image("ftp://example.com/a.png"),
}


def _post(running, body, headers=AUTH, **kwargs) -> httpx.Response:
  content = json.dumps(body).encode() if isinstance(body, dict | list) else body
  headers = {"Content-Type": "application/json", **headers}
  return httpx.post(
    running.url + "/v1/chat/completions", content=content, headers=headers, timeout=30, **kwargs
  )


def _assert_openai_error(response: httpx.Response, status: int | None = None) -> dict:
  assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
  if status is not None:
    assert response.status_code == status, response.text[:300]
  error = response.json()["error"]
  assert set(error) == {"message", "type", "param", "code"} and error["message"]
  return error


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_is_a_4xx_and_goes_nowhere(make_proxy, upstream, body):
  running = make_proxy()
  _assert_openai_error(_post(running, body))
  assert upstream.received == []
  # ...and the server goes on serving.
  assert _post(running, _image(helpers.data_url(PNG))).status_code == 200


def test_clients_without_the_token_are_refused(make_proxy, upstream):
  running = make_proxy()
  body = _image(helpers.data_url(PNG))
  assert _assert_openai_error(_post(running, body, headers={}), 401)["code"] == "unauthorized"
  _assert_openai_error(_post(running, body, headers={"Authorization": "Bearer wrong"}), 401)
  _assert_openai_error(_post(running, body, headers={"Authorization": helpers.TOKEN}), 401)
  assert upstream.received == []
  assert _post(running, body).status_code == 200


def _raw_request(port: int, headers: str, timeout_s: float = 10.0) -> tuple[bytes, float]:
  """Sends a request head (and no body) over a socket: (the first bytes of the answer, seconds)."""
  with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
    start = time.monotonic()
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n{headers}\r\n".encode())
    answer = sock.recv(4096)
    return answer, time.monotonic() - start


def test_a_huge_content_length_is_refused_before_the_body_is_read(make_proxy, upstream):
  running = make_proxy(limits=Limits(max_body_bytes=1 << 20))
  head = f"Authorization: Bearer {helpers.TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {10**12}\r\n"
  answer, seconds = _raw_request(running.port, head)
  assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
  assert b'"code":"body_too_large"' in answer
  assert seconds < 2.0  # no terabyte was waited for
  # Before reading, the token: a stranger's huge body is not even measured.
  answer, seconds = _raw_request(running.port, f"Content-Length: {10**12}\r\n")
  assert answer.startswith(b"HTTP/1.1 401") and seconds < 2.0
  assert upstream.received == []


def test_a_chunked_body_is_cut_off_at_the_limit(make_proxy, upstream):
  running = make_proxy(limits=Limits(max_body_bytes=1 << 16))

  def chunks():  # no Content-Length: httpx sends it chunked
    for _ in range(1000):
      yield b" " * 4096

  response = _post(running, chunks())
  assert _assert_openai_error(response, 413)["code"] == "body_too_large"
  assert upstream.received == []


def test_too_many_images_and_too_large_an_image_are_refused(make_proxy, upstream):
  running = make_proxy(limits=Limits(max_images=2, max_image_bytes=len(PNG) - 1))
  url = helpers.data_url(helpers.encoded(helpers.photo(4, 4)))
  body = {
    "messages": [
      {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}] * 3}
    ]
  }
  assert _assert_openai_error(_post(running, body), 413)["code"] == "too_many_images"
  error = _assert_openai_error(_post(running, _image(helpers.data_url(PNG))), 413)
  assert (
    error["code"] == "image_too_large" and error["param"] == "messages[0].content[0].image_url.url"
  )
  assert upstream.received == []
  assert _post(running, _image(url)).status_code == 200


def _bomb() -> bytes:
  """A 14000×14000 one-colour PNG: under 100 kB on disk, 588 MB as RGB pixels."""
  return helpers.encoded(Image.new("1", (14000, 14000), 1), "PNG", optimize=True)


@pytest.mark.parametrize("max_pixels", [Limits().max_pixels, 10**10], ids=["our limit", "Pillow's"])
def test_a_decompression_bomb_is_a_4xx_and_the_server_carries_on(make_proxy, upstream, max_pixels):
  bomb = _bomb()
  assert len(bomb) < 200_000
  running = make_proxy(limits=Limits(max_pixels=max_pixels))
  start = time.monotonic()
  error = _assert_openai_error(_post(running, _image(helpers.data_url(bomb))), 413)
  assert error["code"] == "image_too_large" and time.monotonic() - start < 5
  assert upstream.received == []
  response = _post(running, _image(helpers.data_url(PNG)))
  assert response.status_code == 200
  np.testing.assert_array_equal(
    helpers.pixels_of(upstream.received[0].image_urls()[0]), 255 - helpers.photo(seed=0)
  )


def test_refusals_are_counted_by_reason(make_proxy):
  running = make_proxy()
  _post(running, b"{")
  _post(running, b"{", headers={})
  _post(running, _image(helpers.data_url(PNG)))
  metrics = httpx.get(running.url + "/metrics", headers=AUTH).json()
  assert metrics["requests"] == 3 and metrics["images"] == 1
  assert metrics["rejected"] == {"total": 2, "by_reason": {"invalid_json": 1, "unauthorized": 1}}
  assert httpx.get(running.url + "/metrics").status_code == 401  # usage is the operator's business
  assert httpx.get(running.url + "/healthz").json() == {"status": "ok", "method": "invert"}


def test_other_methods_and_paths_are_refused_in_the_same_format(make_proxy):
  running = make_proxy()
  response = httpx.get(running.url + "/v1/chat/completions")
  assert _assert_openai_error(response, 405) and response.headers["allow"] == "POST"
  assert (
    _assert_openai_error(httpx.post(running.url + "/v1/completions"), 404)["code"] == "not_found"
  )
