"""Tests of the local OpenAI-compatible server (raw HTTP, no client library)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import math
import os
import subprocess
import sys
import urllib.parse

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
  assert status == 400 and b"bad request" in raw
  status, _, raw = _post(url, {"messages": [{"role": "user", "content": "no image"}]})
  assert status == 400 and b"at least one image" in raw


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
