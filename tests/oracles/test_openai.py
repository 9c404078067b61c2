"""Tests of the `openai` oracle against a real local HTTP server (no mocked client)."""

from __future__ import annotations

import json
import logging
import pickle
import threading

import jax
import numpy as np
import pytest

from anonymax.oracles import server as server_lib
from anonymax.oracles.base import (
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  Oracle,
  Query,
  to_uint8,
)
from anonymax.oracles.image_urls import image_data_url, visual_data_urls
from anonymax.oracles.openai import OpenAIOracle

KEY = "sk-SECRET-4f9c2a7e"
COLOURS = ("red", "green", "blue")


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
  monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def make_server():
  servers = []

  def make(**kwargs):
    kwargs.setdefault("api_key", KEY)
    srv, url = server_lib.serve(server_lib.ColourAnswerer(), **kwargs)
    servers.append(srv)
    return srv, url

  yield make
  for srv in servers:
    srv.close()


@pytest.fixture
def make_oracle():
  oracles = []

  def make(base_url, **kwargs):
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("timeout", 5.0)
    # Text answers unless a test asks for log-probs: "choice" adds the options to every prompt.
    kwargs.setdefault("loss", "vqa")
    oracle = OpenAIOracle("colour-test", base_url=base_url, **kwargs)
    oracles.append(oracle)
    return oracle

  yield make
  for oracle in oracles:
    oracle.close()


def _visuals(n, shape=(6, 6, 3), seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, *shape), np.uint8)


def _queries(n, correct=("red",) * 64, with_choices=True):
  return [
    Query(f"What colour is picture {i}?", (correct[i],) * 10, COLOURS if with_choices else ())
    for i in range(n)
  ]


def _expected_logp(visual):
  """log p(colour) of `ColourAnswerer`, recomputed here: log_softmax(8 · channel means)."""
  m = visual.reshape(-1, 3).astype(np.float64).mean(0) / 255.0
  z = 8.0 * m
  return z - np.log(np.exp(z).sum())


def _by_prompt(srv):
  return {r["prompt"]: r for r in srv.received}


# --- construction ------------------------------------------------------------------------------


def test_missing_key_is_one_line_error_naming_the_variable(monkeypatch):
  monkeypatch.delenv("MY_LLM_KEY", raising=False)
  with pytest.raises(ValueError, match="environment variable MY_LLM_KEY is not set") as e:
    OpenAIOracle("gpt-4o", api_key_env="MY_LLM_KEY")
  assert "\n" not in str(e.value)
  monkeypatch.setenv("MY_LLM_KEY", "")
  with pytest.raises(ValueError, match="MY_LLM_KEY"):
    OpenAIOracle("gpt-4o", api_key_env="MY_LLM_KEY")


@pytest.mark.parametrize(
  "kwargs, field",
  [
    (dict(loss="nll"), "not supported by the openai oracle"),
    (dict(loss="bleu"), "oracle.loss"),
    (dict(image_format="gif"), "image_format"),
    (dict(detail="ultra"), "detail"),
    (dict(jpeg_quality=0), "jpeg_quality"),
    (dict(concurrency=0), "concurrency"),
    (dict(max_retries=-1), "max_retries"),
    (dict(timeout=0), "timeout"),
    (dict(loss="choice", top_logprobs=21), "top_logprobs"),
    (dict(budget_calls=-1), "budget_calls"),
    (dict(prices={"in": 1.0, "out": 2.0}), "prices"),
    (dict(prices=(1.0, 2.0, 3.0)), "prices"),
  ],
)
def test_bad_settings_are_rejected(kwargs, field):
  with pytest.raises(ValueError, match=field):
    OpenAIOracle("gpt-4o", **kwargs)


def test_image_data_url_png_is_exact_and_jpeg_is_close():
  from anonymax.oracles.server import decode_data_url

  image = _visuals(1, (16, 16, 3))[0] // 4 * 4
  url = image_data_url(image, "png")
  assert url.startswith("data:image/png;base64,")
  np.testing.assert_array_equal(decode_data_url(url), image)
  smooth = np.full((16, 16, 3), 120, np.uint8)
  url = image_data_url(smooth, "jpeg", jpeg_quality=95)
  assert url.startswith("data:image/jpeg;base64,")
  assert np.abs(decode_data_url(url).astype(int) - 120).max() <= 2
  clip = _visuals(1, (3, 4, 4, 3))[0]
  urls = visual_data_urls(clip)
  assert len(urls) == 3
  np.testing.assert_array_equal(decode_data_url(urls[2]), clip[2])
  assert len(visual_data_urls(clip[0])) == 1
  with pytest.raises(ValueError, match="image_format"):
    image_data_url(image, "gif")
  with pytest.raises(ValueError, match="want \\[H, W, 3\\]"):
    visual_data_urls(np.zeros((4, 4), np.uint8))


# --- against the local server ------------------------------------------------------------------


def test_is_an_oracle_and_sends_exactly_the_anonymized_images(make_server, make_oracle):
  srv, url = make_server()
  oracle = make_oracle(url, loss="vqa", detail="low", max_tokens=7)
  assert isinstance(oracle, Oracle)
  floats = np.random.default_rng(1).random((5, 6, 6, 3)).astype(np.float32)
  out = oracle.query(floats, _queries(5))
  expected = to_uint8(floats)
  got = _by_prompt(srv)
  for i, q in enumerate(_queries(5)):
    np.testing.assert_array_equal(got[q.prompt]["visuals"][0], expected[i])
    request = got[q.prompt]["body"]
    assert request["temperature"] == 0 and request["max_tokens"] == 7
    assert request["messages"][0]["content"][1]["image_url"]["detail"] == "low"
    assert "logprobs" not in request  # the vqa loss needs text only
  # vqa: 1 − accuracy; ten identical references → 0 if the answer is "red", else 1.
  answers = [COLOURS[int(np.argmax(_expected_logp(v)))] for v in expected]
  assert out.answers == answers
  np.testing.assert_array_equal(out.losses, [0.0 if a == "red" else 1.0 for a in answers])
  np.testing.assert_array_equal(out.status, STATUS_OK)
  assert oracle.stats.calls == 5 and oracle.stats.failures == 0
  # usage: "What colour is picture i?" = 5 words + 85 image tokens; one answer token each.
  assert oracle.stats.prompt_tokens == 5 * 90 and oracle.stats.completion_tokens == 5


def test_bad_batches_are_rejected_before_any_request(make_server, make_oracle):
  srv, url = make_server()
  oracle = make_oracle(url)
  with pytest.raises(ValueError, match="want \\[N, H, W, 3\\]"):
    oracle.query(np.zeros((2, 6, 6), np.uint8), _queries(2))
  with pytest.raises(ValueError, match="3 visuals but 2 queries"):
    oracle.query(_visuals(3), _queries(2))
  assert srv.arrivals == []


def test_clips_are_sent_as_frames(make_server, make_oracle):
  srv, url = make_server()
  clips = _visuals(2, (3, 4, 4, 3), seed=2)
  out = make_oracle(url).query(clips, _queries(2))
  got = _by_prompt(srv)
  for i, q in enumerate(_queries(2)):
    np.testing.assert_array_equal(got[q.prompt]["visuals"], clips[i][None])
  assert out.answers == [COLOURS[int(np.argmax(_expected_logp(c)))] for c in clips]


def test_choice_loss_from_top_logprobs(make_server, make_oracle):
  srv, url = make_server()
  visuals = _visuals(6, seed=3)
  correct = ("red", "green", "blue", "blue", "green", "red")
  queries = _queries(6, correct)
  out = make_oracle(url, loss="choice", top_logprobs=5).query(visuals, queries)
  # All three colours are among the top logprobs and they sum to 1: L = −log p(correct).
  expected = [-_expected_logp(v)[COLOURS.index(c)] for v, c in zip(visuals, correct, strict=True)]
  np.testing.assert_allclose(out.losses, expected, rtol=1e-5)
  np.testing.assert_array_equal(out.status, STATUS_OK)
  request = _by_prompt(srv)[queries[0].prompt]["body"]
  assert request["logprobs"] is True and request["top_logprobs"] == 5
  assert (
    request["messages"][0]["content"][-1]["text"] == "Answer with exactly one of: red, green, blue."
  )


def test_choice_without_choices_or_with_a_foreign_answer_is_invalid(make_server, make_oracle):
  _, url = make_server()
  queries = [Query("q0?", ("red",)), Query("q1?", ("purple",), COLOURS), _queries(1)[0]]
  out = make_oracle(url, loss="choice").query(_visuals(3), queries)
  np.testing.assert_array_equal(out.status, [STATUS_INVALID, STATUS_INVALID, STATUS_OK])
  np.testing.assert_array_equal(out.losses[:2], 0.0)


def test_faults_are_retried_and_results_equal_a_fault_free_run(make_server, make_oracle):
  visuals, queries = _visuals(8, seed=4), _queries(8, ("red", "green") * 4)
  _, clean_url = make_server()
  clean = make_oracle(clean_url, loss="choice").query(visuals, queries)
  faults = {0: "429", 1: "500", 2: "hang", 3: "malformed", 5: "429", 9: "500"}
  srv, url = make_server(faults=faults, retry_after=0.05, hang_s=1.5)
  # Our own backoff loop alone (the client's retries off), with a timeout the "hang" exceeds.
  oracle = make_oracle(url, loss="choice", client_max_retries=0, max_retries=3, timeout=0.5)
  out = oracle.query(visuals, queries)
  np.testing.assert_array_equal(out.status, STATUS_OK)
  np.testing.assert_array_equal(out.losses, clean.losses)
  assert out.answers == clean.answers
  assert oracle.stats.failures == 0
  assert len(srv.arrivals) >= 8 + 6  # every fault cost a retry
  # The client's own retries (which honour Retry-After too) cover 429/500 without ours.
  srv2, url2 = make_server(faults={0: "429", 1: "500"}, retry_after=0.05)
  oracle2 = make_oracle(url2, loss="choice", client_max_retries=2, max_retries=0)
  out2 = oracle2.query(visuals, queries)
  np.testing.assert_array_equal(out2.losses, clean.losses)
  assert len(srv2.arrivals) == 10


def test_retry_waits_for_retry_after(make_server, make_oracle):
  srv, url = make_server(faults={0: "429"}, retry_after=0.4)
  oracle = make_oracle(url, client_max_retries=0, max_retries=1, backoff=0.0)
  out = oracle.query(_visuals(1), _queries(1))
  assert out.status[0] == STATUS_OK
  (_, t0), (_, t1) = srv.arrivals
  assert t1 - t0 >= 0.39  # the backoff alone would retry at once


def test_persistent_failures_are_counted_never_raised(make_server, make_oracle):
  srv, url = make_server(faults={i: "500" for i in range(100)})
  oracle = make_oracle(url, client_max_retries=0, max_retries=1)
  out = oracle.query(_visuals(3), _queries(3))
  np.testing.assert_array_equal(out.status, STATUS_FAILED)
  np.testing.assert_array_equal(out.losses, 0.0)
  assert out.answers == ["", "", ""]
  assert oracle.stats.failures == 3 and oracle.stats.calls == 0
  assert len(srv.arrivals) == 6  # one try plus one retry each


def test_non_finite_logprobs_are_invalid(make_server, make_oracle):
  _, url = make_server(faults={0: "nan"})
  oracle = make_oracle(url, loss="choice")
  out = oracle.query(_visuals(3), _queries(3))
  assert sorted(out.status.tolist()) == [STATUS_OK, STATUS_OK, STATUS_INVALID]
  assert np.all(np.isfinite(out.losses)) and oracle.stats.failures == 1


def test_a_rejected_key_fails_without_retrying(make_server, make_oracle):
  srv, url = make_server(api_key="sk-other")
  out = make_oracle(url, client_max_retries=2, max_retries=2).query(_visuals(2), _queries(2))
  np.testing.assert_array_equal(out.status, STATUS_FAILED)
  assert len(srv.arrivals) == 2


def test_concurrency_is_bounded(make_server, make_oracle):
  srv, url = make_server(latency_s=0.3)
  make_oracle(url, concurrency=3).query(_visuals(9), _queries(9))
  assert 2 <= srv.max_in_flight <= 3


def test_call_budget_stops_requests(make_server, make_oracle, tmp_path):
  srv, url = make_server()
  usage_path = tmp_path / "oracle_usage.json"
  oracle = make_oracle(url, concurrency=2, budget_calls=3, usage_path=str(usage_path))
  out = oracle.query(_visuals(5), _queries(5))
  assert sorted(out.status.tolist()) == [STATUS_OK] * 3 + [STATUS_FAILED] * 2
  assert oracle.exhausted and oracle.stats.calls == 3 and len(srv.arrivals) == 3
  out = oracle.query(_visuals(2), _queries(2))
  np.testing.assert_array_equal(out.status, STATUS_FAILED)
  assert len(srv.arrivals) == 3  # nothing more was sent
  usage = json.loads(usage_path.read_text())
  assert usage["calls"] == 3 and usage["failures"] == 4 and usage["exhausted"] is True
  assert usage["budget"] == {"calls": 3, "tokens": None, "cost": None}


def test_token_budget_and_cost(make_server, make_oracle):
  _, url = make_server()
  prices = {"colour-test": {"input": 2.5, "output": 10.0}, "other": {"input": 9.0, "output": 9.0}}
  oracle = make_oracle(url, concurrency=1, budget_tokens=100, prices=prices)
  out = oracle.query(_visuals(3), _queries(3))
  # 90 + 1 tokens per call: the second call crosses 100, the third is not sent.
  np.testing.assert_array_equal(out.status, [STATUS_OK, STATUS_OK, STATUS_FAILED])
  assert oracle.stats.prompt_tokens == 180 and oracle.stats.completion_tokens == 2
  assert oracle.stats.cost == pytest.approx((180 * 2.5 + 2 * 10.0) / 1e6)
  cost_capped = make_oracle(url, concurrency=1, budget_cost=200e-6, prices=(2.5, 10.0))
  out = cost_capped.query(_visuals(3), _queries(3))
  # 235e-6 per call ≥ 200e-6: one call, then exhausted.
  np.testing.assert_array_equal(out.status, [STATUS_OK, STATUS_FAILED, STATUS_FAILED])
  assert cost_capped.exhausted


def test_the_key_never_leaves_the_client(make_server, make_oracle, tmp_path, caplog):
  caplog.set_level(logging.DEBUG)
  _, url = make_server(faults={0: "429", 1: "500"}, retry_after=0.01)
  usage_path = tmp_path / "usage.json"
  oracle = make_oracle(url, client_max_retries=1, max_retries=2, usage_path=str(usage_path))
  oracle.query(_visuals(3), _queries(3))
  texts = [repr(oracle), str(oracle), usage_path.read_text(), json.dumps(oracle.stats.as_dict())]
  texts.append(repr(vars(oracle)))
  with pytest.raises(TypeError, match="cannot be pickled"):
    pickle.dumps(oracle)  # the key is what refuses, whatever else could be pickled
  texts.append(caplog.text)
  assert caplog.records  # the retries were logged, so the check below means something
  for text in texts:
    assert KEY not in text


def test_survives_calls_from_several_threads(make_server, make_oracle):
  _, url = make_server()
  oracle = make_oracle(url, loss="choice")
  visuals, queries = _visuals(4, seed=5), _queries(4)
  first = oracle.query(visuals, queries)
  results = []
  for _ in range(2):
    t = threading.Thread(target=lambda: results.append(oracle.query(visuals, queries)))
    t.start()
    t.join()
  for r in results:
    np.testing.assert_array_equal(r.losses, first.losses)
  oracle.close()  # closing and querying again starts a fresh loop and client
  np.testing.assert_array_equal(oracle.query(visuals, queries).losses, first.losses)
  assert oracle.stats.calls == 16


def test_through_the_bridge_inside_jit(make_server, make_oracle):
  from anonymax.oracles.bridge import OracleBridge

  srv, url = make_server()
  oracle = make_oracle(url, loss="choice")
  queries = _queries(6, ("blue",) * 6)
  bridge = OracleBridge(oracle, queries)
  visuals = np.random.default_rng(6).random((4, 6, 6, 3)).astype(np.float32)
  indices = np.array([5, 0, 3, 1], np.int32)
  losses, status = jax.jit(bridge)(visuals, indices)
  uint8 = to_uint8(visuals)
  expected = [-_expected_logp(v)[2] for v in uint8]
  np.testing.assert_allclose(np.asarray(losses), expected, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(status), STATUS_OK)
  got = _by_prompt(srv)
  for i, idx in enumerate(indices):
    np.testing.assert_array_equal(got[queries[idx].prompt]["visuals"][0], uint8[i])
