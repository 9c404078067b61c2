"""Tests of the local OpenAI-compatible server (raw HTTP, no client library)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import math
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import zlib

import numpy as np
import pytest
from PIL import Image

from anonymax.oracles import server as server_lib


def _png_url(image: np.ndarray) -> str:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _body(images, prompt="What colour?", **extra):
  content = [{"type": "text", "text": prompt}]
  content += [{"type": "image_url", "image_url": {"url": _png_url(im)}} for im in images]
  return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


def _post(base_url: str, body, key: str | None = "sk-test", path="/chat/completions"):
  """POSTs `body` (dict, or raw bytes); returns (status, headers, raw response bytes)."""
  u = urllib.parse.urlsplit(base_url)
  conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
  headers = {"Content-Type": "application/json"}
  if key is not None:
    headers["Authorization"] = f"Bearer {key}"
  data = body if isinstance(body, bytes) else json.dumps(body).encode()
  conn.request("POST", u.path + path, body=data, headers=headers)
  resp = conn.getresponse()
  out = resp.status, dict(resp.getheaders()), resp.read()
  conn.close()
  return out


def _error(raw: bytes) -> dict:
  """The "error" object of an error response, checked to have OpenAI's four fields."""
  error = json.loads(raw)["error"]
  assert set(error) == {"message", "type", "param", "code"} and "\n" not in error["message"]
  return error


def _raw_exchange(base_url: str, data: bytes, timeout: float = 10.0) -> tuple[int, dict, float]:
  """Sends raw bytes, reads until the server closes; (status, error object, seconds taken)."""
  u = urllib.parse.urlsplit(base_url)
  start = time.monotonic()
  with socket.create_connection((u.hostname, u.port), timeout=timeout) as sock:
    sock.sendall(data)
    received = b""
    while chunk := sock.recv(65536):
      received += chunk
  head, _, body = received.partition(b"\r\n\r\n")
  assert b"connection: close" in head.lower()
  return int(head.split()[1]), _error(body), time.monotonic() - start


def _headers(key="sk-test", length: str | None = "10", path="/v1/chat/completions") -> bytes:
  lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
  lines += [f"Authorization: Bearer {key}"] if key else []
  lines += [f"Content-Length: {length}"] if length is not None else []
  return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _png_of_size(width: int, height: int) -> bytes:
  """A valid 1-bit greyscale PNG of width × height black pixels: a few KB, however large."""

  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  row = bytes(1 + (width + 7) // 8)  # filter type 0, then the packed bits
  packer = zlib.compressobj(9)
  idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
  ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _png_body(png: bytes, **extra) -> dict:
  url = "data:image/png;base64," + base64.b64encode(png).decode()
  content = [
    {"type": "text", "text": "What colour?"},
    {"type": "image_url", "image_url": {"url": url}},
  ]
  return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
def make_server():
  servers = []

  def make(answerer=None, **kwargs):
    kwargs.setdefault("api_key", "sk-test")
    srv, url = server_lib.serve(answerer or server_lib.ColourAnswerer(), **kwargs)
    servers.append(srv)
    return srv, url

  yield make
  for srv in servers:
    srv.close()


def _solid(rgb, size=4):
  return np.broadcast_to(np.array(rgb, np.uint8), (size, size, 3)).copy()


def test_colour_answerer_is_the_log_softmax_of_scaled_channel_means():
  ans = server_lib.ColourAnswerer(sharpness=8.0)
  out = ans.answer(_solid((255, 0, 0))[None], ["q"], top_k=3)[0]
  z = math.exp(8.0) + 2.0
  assert [t for t, _ in out] == ["red", "green", "blue"]  # ties keep vocabulary order
  assert out[0][1] == pytest.approx(8.0 - math.log(z))
  assert out[1][1] == pytest.approx(-math.log(z))
  # A clip: the mean is taken over every frame; half blue, half green frames tie at 0.5 each.
  clip = np.stack([_solid((0, 0, 255)), _solid((0, 255, 0))])[None]
  top = ans.answer(clip, ["q"], top_k=1)[0]
  assert top == [("green", pytest.approx(4.0 - math.log(1.0 + 2 * math.exp(4.0))))]
  with pytest.raises(ValueError, match="visuals"):
    ans.answer(np.zeros((1, 4, 4, 3), np.float32), ["q"])


def test_token_logprobs_are_prefix_mass_ratios():
  answers = [
    ("brushing hair", math.log(0.5)),
    ("waving", math.log(0.3)),
    ("brushing teeth", math.log(0.2)),
  ]
  content, entries = server_lib.token_logprobs(answers, max_tokens=16, top_k=5)
  assert content == "brushing hair"
  assert [e["token"] for e in entries] == ["brushing", " hair"]
  # token 0: M(brushing) = 0.7; alternatives brushing 0.7, waving 0.3.
  assert entries[0]["logprob"] == pytest.approx(math.log(0.7))
  assert [(t["token"], t["logprob"]) for t in entries[0]["top_logprobs"]] == [
    ("brushing", pytest.approx(math.log(0.7))),
    ("waving", pytest.approx(math.log(0.3))),
  ]
  # token 1: M(brushing hair) / M(brushing) = 0.5 / 0.7; alternative teeth 0.2 / 0.7.
  assert entries[1]["logprob"] == pytest.approx(math.log(5 / 7))
  assert [t["token"] for t in entries[1]["top_logprobs"]] == [" hair", " teeth"]
  assert entries[1]["top_logprobs"][1]["logprob"] == pytest.approx(math.log(2 / 7))
  # Cut to max_tokens words, and top_k alternatives.
  content, entries = server_lib.token_logprobs(answers, max_tokens=1, top_k=1)
  assert content == "brushing" and len(entries) == 1 and len(entries[0]["top_logprobs"]) == 1
  assert server_lib.token_logprobs([], 16, 5) == ("", [])


def test_decode_data_url_roundtrip_and_errors():
  image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), np.uint8)
  np.testing.assert_array_equal(server_lib.decode_data_url(_png_url(image)), image)
  with pytest.raises(ValueError, match="not a base64 image data URL"):
    server_lib.decode_data_url("https://example.com/x.png")
  with pytest.raises(ValueError, match="cannot decode"):
    server_lib.decode_data_url("data:image/png;base64," + base64.b64encode(b"junk").decode())


def test_parse_request_single_image_clip_and_errors():
  a, b = _solid((1, 2, 3)), _solid((4, 5, 6))
  prompt, visuals, texts = server_lib.parse_request(_body([a]))
  assert prompt == "What colour?" and texts == ["What colour?"] and visuals.shape == (1, 4, 4, 3)
  body = _body([a, b])
  body["messages"][0]["content"].append({"type": "text", "text": "Options: x, y."})
  prompt, visuals, texts = server_lib.parse_request(body)
  assert prompt == "What colour?" and texts[-1] == "Options: x, y."
  np.testing.assert_array_equal(visuals, np.stack([a, b])[None])
  with pytest.raises(ValueError, match="no user message"):
    server_lib.parse_request({"messages": [{"role": "system", "content": "hi"}]})
  with pytest.raises(ValueError, match="at least one image"):
    server_lib.parse_request({"messages": [{"role": "user", "content": "only text"}]})
  with pytest.raises(ValueError, match="different sizes"):
    server_lib.parse_request(_body([a, _solid((0, 0, 0), size=5)]))


def test_serves_answers_usage_and_logprobs_over_http(make_server):
  srv, url = make_server()
  assert srv.server_address[0] == "127.0.0.1"  # loopback by default
  image = _solid((0, 255, 0))
  status, _, raw = _post(url, _body([image], logprobs=True, top_logprobs=2))
  assert status == 200
  resp = json.loads(raw)
  choice = resp["choices"][0]
  assert choice["message"]["content"] == "green"
  first = choice["logprobs"]["content"][0]
  assert first["logprob"] == pytest.approx(8.0 - math.log(math.exp(8.0) + 2.0))
  assert [t["token"] for t in first["top_logprobs"]] == ["green", "red"]  # top_logprobs=2
  # usage: 2 prompt words + 85 per image; one completion token.
  assert resp["usage"] == {"prompt_tokens": 87, "completion_tokens": 1, "total_tokens": 88}
  np.testing.assert_array_equal(srv.received[0]["visuals"], image[None])
  # Without logprobs requested, none are sent.
  _, _, raw = _post(url, _body([image]))
  assert json.loads(raw)["choices"][0]["logprobs"] is None


def test_rejects_bad_key_route_and_request(make_server):
  _, url = make_server()
  body = _body([_solid((0, 0, 0))])
  assert _post(url, body, key="sk-wrong")[0] == 401
  assert _post(url, body, key=None)[0] == 401
  assert _post(url, body, path="/embeddings")[0] == 404
  status, _, raw = _post(url, b"{not json")
  assert status == 400 and _error(raw)["message"].startswith("request body: not valid JSON")
  status, _, raw = _post(url, {"messages": [{"role": "user", "content": "no image"}]})
  assert status == 400 and "at least one image" in _error(raw)["message"]


def test_answerer_errors_become_400_or_500(make_server):
  class Refuses:
    def answer(self, visuals, prompts, top_k):
      raise ValueError("visuals: shape (1, 4, 4, 3), expected (1, 64, 64, 3)")

  class Crashes:
    def answer(self, visuals, prompts, top_k):
      raise RuntimeError("out of memory")

  _, url = make_server(Refuses())
  status, _, raw = _post(url, _body([_solid((0, 0, 0))]))
  assert status == 400 and b"expected (1, 64, 64, 3)" in raw
  _, url = make_server(Crashes())
  status, _, raw = _post(url, _body([_solid((0, 0, 0))]))
  assert status == 500 and b"RuntimeError" in raw


def test_injects_faults_by_request_number(make_server):
  faults = {0: "429", 1: "500", 2: "malformed", 3: "nan", 4: "hang"}
  srv, url = make_server(faults=faults, retry_after=0.25, hang_s=0.2)
  body = _body([_solid((255, 0, 0))], logprobs=True, top_logprobs=3)
  status, headers, _ = _post(url, body)
  assert status == 429 and float(headers["Retry-After"]) == 0.25
  assert _post(url, body)[0] == 500
  status, _, raw = _post(url, body)
  assert status == 200
  with pytest.raises(json.JSONDecodeError):
    json.loads(raw)
  status, _, raw = _post(url, body)
  entries = json.loads(raw)["choices"][0]["logprobs"]["content"]
  assert math.isnan(entries[0]["logprob"])
  assert all(math.isnan(t["logprob"]) for t in entries[0]["top_logprobs"])
  status, _, raw = _post(url, body)  # "hang" only delays: it still answers afterwards
  assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "red"
  assert _post(url, body)[0] == 200  # request 5 has no fault
  assert [n for n, _ in srv.arrivals] == [0, 1, 2, 3, 4, 5]
  with pytest.raises(ValueError, match=r"faults\[3\]"):
    server_lib.ChatServer(("127.0.0.1", 0), server_lib.ColourAnswerer(), faults={3: "boom"})


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_command_line_serves_the_colour_answerer():
  env = dict(os.environ, OPENAI_API_KEY="sk-cli")
  launcher = os.path.join(ROOT, "launch", "reference_server.py")
  proc = subprocess.Popen(
    [sys.executable, launcher, "--answerer", "colour", "--port", "0"],
    stdout=subprocess.PIPE,
    env=env,
    text=True,
    cwd=os.path.dirname(ROOT),  # not the repository: the launcher needs no path set up
  )
  try:
    line = proc.stdout.readline()
    assert line.startswith("serving ColourAnswerer at http://127.0.0.1:")
    url = line.split()[-1]
    body = _body([_solid((0, 0, 255))])
    assert _post(url, body, key="sk-wrong")[0] == 401  # the key comes from OPENAI_API_KEY
    status, _, raw = _post(url, body, key="sk-cli")
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "blue"
  finally:
    proc.kill()
    proc.wait()


def test_the_reference_black_box_behind_the_server_scores_like_the_direct_oracle(monkeypatch):
  """oracle=openai,base_url=<this server> must give the reference oracle's own losses."""
  import jax

  from anonymax.oracles import reference_model
  from anonymax.oracles.base import Query
  from anonymax.oracles.openai import OpenAIOracle
  from anonymax.oracles.reference import ReferenceOracle

  vocab, prompts, size = ("red", "green", "blue", "T-shirt"), ("What color is the ball?",), 8
  config = reference_model.TrainConfig(steps=1, batch_size=2, features=(4,), hidden=4, grid=2)
  model = reference_model.make_model(config, num_answers=len(vocab), num_questions=len(prompts))
  # Every weight 0 and the last bias log p: it answers p = (0.5, 0.25, 0.125, 0.125) whatever it sees.
  params = reference_model.init_params(model, (1, size, size, 3), seed=0)
  params = jax.tree.map(np.zeros_like, params)
  params["logits"]["bias"] = np.log([0.5, 0.25, 0.125, 0.125]).astype(np.float32)

  def oracle(loss):
    kw = dict(vocab=vocab, prompts=prompts, image_size=size, config=config, loss=loss)
    return ReferenceOracle(params, **kw)

  monkeypatch.setenv("OPENAI_API_KEY", "sk-ref")
  srv, url = server_lib.serve(oracle("choice"), api_key="sk-ref")
  visuals = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), np.uint8)
  queries = [
    Query(prompts[0], ("green",), ("red", "green", "blue")),
    Query(prompts[0], ("red",) * 10, ("red", "green", "blue")),
  ]
  try:
    for loss in ("choice", "vqa"):
      remote = OpenAIOracle("reference", base_url=url, loss=loss)
      got = remote.query(visuals, queries)
      remote.close()
      want = oracle(loss).query(visuals, queries)
      np.testing.assert_allclose(got.losses, want.losses, rtol=1e-5)
      assert got.answers == want.answers == ["red", "red"]
    # By hand: choice −log(0.25 / 0.875) for "green"; vqa 0 for ten "red" references.
    assert want.losses[1] == 0.0
    assert oracle("choice").query(visuals, queries).losses[0] == pytest.approx(
      -math.log(0.25 / 0.875), rel=1e-5
    )
  finally:
    srv.close()


def test_the_key_is_checked_before_the_body_is_awaited(make_server):
  srv, url = make_server()
  # Headers announcing 10 GB, then nothing: the answer must come without waiting for the body.
  status, error, seconds = _raw_exchange(url, _headers(key="sk-wrong", length=str(10**10)))
  assert status == 401 and error["code"] == "invalid_api_key" and seconds < 1.0
  status, error, seconds = _raw_exchange(url, _headers(key=None, length=str(10**10)))
  assert status == 401 and seconds < 1.0
  # The right key but a body over the cap: 413, again without reading it.
  status, error, seconds = _raw_exchange(url, _headers(length=str(10**10)))
  assert status == 413 and str(server_lib.MAX_BODY_BYTES) in error["message"] and seconds < 1.0
  status, _, _ = _raw_exchange(url, _headers(path="/v1/embeddings", length=str(10**10)))
  assert status == 404
  assert srv.received == []


def test_content_length_must_be_present_and_valid(make_server):
  _, url = make_server()
  assert _raw_exchange(url, _headers(length=None))[0] == 411
  for bad in ("abc", "-5", "1e3"):
    status, error, _ = _raw_exchange(url, _headers(length=bad))
    assert status == 400 and "Content-Length" in error["message"], bad
  twice = _headers(length="10").replace(b"\r\n\r\n", b"\r\nContent-Length: 12\r\n\r\n")
  assert _raw_exchange(url, twice)[0] == 400


def test_a_body_over_the_cap_is_refused_and_the_client_still_reads_the_answer(make_server):
  _, url = make_server(max_body_bytes=1000)
  # The client sends all 4 MB before reading: the server answers first, then discards the rest
  # (closing with unread bytes would reset the connection and lose the answer).
  status, _, raw = _post(url, b"x" * (4 * 2**20))
  assert status == 413 and "over the limit of 1000" in _error(raw)["message"]
  assert _post(url, _body([_solid((0, 255, 0))]))[0] == 200  # small requests still pass
  with pytest.raises(ValueError, match="max_body_bytes=0"):
    server_lib.ChatServer(("127.0.0.1", 0), server_lib.ColourAnswerer(), max_body_bytes=0)


def test_a_client_that_stops_sending_is_timed_out(make_server):
  _, url = make_server(timeout_s=0.5)
  # 10 of the 100 announced bytes, then silence: a 408 after the socket timeout.
  status, error, seconds = _raw_exchange(url, _headers(length="100") + b'{"model":1')
  assert status == 408 and 0.4 < seconds < 5.0 and "0.5 s" in error["message"]
  # Half a header block, then silence: the connection is closed, the thread freed.
  u = urllib.parse.urlsplit(url)
  start = time.monotonic()
  with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n")
    assert sock.recv(65536) == b""
  assert 0.4 < time.monotonic() - start < 5.0


MALFORMED = [
  (b"[1, 2]", None, "a JSON list"),
  (b"[" * 100_000, None, "not valid JSON"),
  (b"\xff\xfe{}", None, "not valid JSON"),
  ({"messages": None}, "messages", "messages: missing"),
  ({"messages": "hi"}, "messages", "messages: missing"),
  ({"messages": [{"role": "user", "content": 3}]}, "messages", "not a string or a list"),
  ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages", "text"),
  ({"max_tokens": "abc"}, "max_tokens", "max_tokens='abc': must be an integer"),
  ({"max_tokens": -1}, "max_tokens", "max_tokens=-1"),
  ({"max_tokens": 0}, "max_tokens", "max_tokens=0"),
  ({"max_tokens": 10**9}, "max_tokens", "in [1, 131072]"),
  ({"max_tokens": 2.5}, "max_tokens", "max_tokens=2.5"),
  ({"max_completion_tokens": True}, "max_completion_tokens", "max_completion_tokens=True"),
  ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "top_logprobs=21"),
  ({"logprobs": True, "top_logprobs": -1}, "top_logprobs", "in [0, 20]"),
  ({"logprobs": True, "top_logprobs": "3"}, "top_logprobs", "top_logprobs='3'"),
  ({"logprobs": "yes"}, "logprobs", "logprobs='yes'"),
]


@pytest.mark.parametrize("change, param, message", MALFORMED)
def test_every_malformed_field_gets_a_400_naming_it(make_server, change, param, message):
  srv, url = make_server()
  body = change if isinstance(change, bytes) else {**_body([_solid((9, 9, 9))]), **change}
  status, _, raw = _post(url, body)
  error = _error(raw)
  assert status == 400 and message in error["message"] and error["param"] == param
  assert error["type"] == "invalid_request_error" and srv.received == []


def _with_url(url: str) -> dict:
  content = [{"type": "text", "text": "q"}, {"type": "image_url", "image_url": {"url": url}}]
  return {"messages": [{"role": "user", "content": content}]}


def test_bad_images_get_a_4xx_and_the_connection_stays_usable(make_server):
  srv, url = make_server()
  good = _png_url(_solid((0, 0, 255)))
  truncated = good[: len("data:image/png;base64,") + 60]  # a PNG header, its pixels cut off
  cases = [
    ("https://example.com/cat.png", "not a base64 image data URL"),
    ("data:image/png;base64,@@@@", "invalid base64"),
    ("data:image/png;base64," + base64.b64encode(b"hello, not an image").decode(), "cannot decode"),
    (truncated[: len(truncated) // 4 * 4], "cannot decode"),
  ]
  u = urllib.parse.urlsplit(url)
  conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
  headers = {"Authorization": "Bearer sk-test", "Content-Type": "application/json"}
  for image_url, message in cases:
    conn.request("POST", "/v1/chat/completions", json.dumps(_with_url(image_url)), headers)
    resp = conn.getresponse()
    raw = resp.read()
    assert resp.status == 400 and message in _error(raw)["message"], image_url
  body = json.dumps({"model": "m", **_with_url(good)})
  conn.request("POST", "/v1/chat/completions", body, headers)  # the same connection
  resp = conn.getresponse()
  assert (
    resp.status == 200 and json.loads(resp.read())["choices"][0]["message"]["content"] == "blue"
  )
  conn.close()
  assert len(srv.received) == 1


def test_the_png_builder_makes_real_pngs():
  image = Image.open(io.BytesIO(_png_of_size(300, 200)))
  assert image.size == (300, 200) and not np.asarray(image.convert("RGB")).any()


def test_a_decompression_bomb_is_refused_without_decoding_it(make_server, tmp_path):
  srv, url = make_server()
  path = tmp_path / "bomb.png"
  path.write_bytes(_png_of_size(14000, 14000))  # 196 million pixels, 588 MB as RGB
  assert path.stat().st_size < 100_000
  start = time.monotonic()
  status, _, raw = _post(url, _png_body(path.read_bytes()))
  assert 400 <= status < 500 and "pixels" in _error(raw)["message"]
  assert time.monotonic() - start < 3.0
  # Under Pillow's own bomb limit but over the server's: refused on the header too.
  status, _, raw = _post(url, _png_body(_png_of_size(9000, 9000)))
  assert status == 413 and "9000×9000 (81000000 pixels)" in _error(raw)["message"]
  assert srv.received == []


def test_the_pixel_cap_counts_every_frame_of_a_request(make_server):
  _, url = make_server(max_image_pixels=20 * 30)
  frame = np.zeros((20, 30, 3), np.uint8)
  assert _post(url, _body([frame]))[0] == 200
  status, _, raw = _post(url, _body([frame, frame]))
  assert status == 413 and "2 images (1200 pixels)" in _error(raw)["message"]
  with pytest.raises(server_lib.RequestError, match="over the limit of 599") as excinfo:
    server_lib.decode_data_url(_png_url(frame), max_pixels=599)
  assert excinfo.value.status == 413
