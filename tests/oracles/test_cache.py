"""Tests of the persistent oracle cache."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from anonymax.oracles import server as server_lib
from anonymax.oracles.base import (
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  Oracle,
  OracleOutput,
  Query,
)
from anonymax.oracles.cache import CachedOracle, OracleCache, cache_key
from anonymax.oracles.openai import OpenAIOracle


class SpyOracle(Oracle):
  """Loss = mean pixel / 255 of each visual; remembers what it was asked; scripted statuses."""

  cache_signature = "temperature=0"

  def __init__(self, status_of_prompt=None):
    super().__init__(name="spy", loss="vqa")
    self.closed = False
    self.spent = False  # what `exhausted` reports
    self.seen: list[tuple[np.ndarray, list[str]]] = []
    self.status_of_prompt = status_of_prompt or {}

  @property
  def exhausted(self):
    return self.spent

  def close(self):
    self.closed = True

  def query(self, visuals, queries):
    self.seen.append((visuals.copy(), [q.prompt for q in queries]))
    self.stats.calls += len(queries)
    status = np.array([self.status_of_prompt.get(q.prompt, STATUS_OK) for q in queries], np.int32)
    losses = np.where(status == STATUS_OK, visuals.reshape(len(queries), -1).mean(1) / 255.0, 0)
    self.stats.failures += int(np.sum(status != STATUS_OK))
    return OracleOutput(losses.astype(np.float32), status, [f"a-{q.prompt}" for q in queries])


def _visuals(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 4, 4, 3), np.uint8)


def _queries(n):
  return [Query(f"q{i}?", ("yes",) * 10, ("yes", "no")) for i in range(n)]


def test_cache_key_changes_with_every_part_of_the_request():
  v = _visuals(1)[0]
  q = Query("What?", ("a", "b"), ("a", "b", "c"))
  base = cache_key("m", "vqa", "sig", q, v)
  assert base == cache_key("m", "vqa", "sig", Query("What?", ("a", "b"), ("a", "b", "c")), v.copy())
  assert len(base) == 64
  pixel = v.copy()
  pixel[3, 2, 1] ^= 1
  variants = [
    cache_key("m2", "vqa", "sig", q, v),
    cache_key("m", "choice", "sig", q, v),
    cache_key("m", "vqa", "sig2", q, v),
    cache_key("m", "vqa", "sig", Query("What ?", ("a", "b"), ("a", "b", "c")), v),
    cache_key("m", "vqa", "sig", Query("What?", ("a",), ("a", "b", "c")), v),
    cache_key("m", "vqa", "sig", Query("What?", ("a", "b"), ("a", "b")), v),
    cache_key("m", "vqa", "sig", q, pixel),
    cache_key("m", "vqa", "sig", q, v.reshape(2, 8, 3)),  # same bytes, other shape
    cache_key("m", "vqa", "sig", q, v.astype(np.int8)),  # same bytes, other dtype
    # Field boundaries are unambiguous: moving text between fields changes the key.
    cache_key("m", "vqa", "sig", Query("What?", ("a, b",), ("a", "b", "c")), v),
  ]
  assert len(set(variants) | {base}) == len(variants) + 1


def test_store_round_trip_persists_across_reopen(tmp_path):
  path = str(tmp_path / "sub" / "cache.sqlite")
  cache = OracleCache(path)
  assert len(cache) == 0 and cache.get_many(["k1"]) == {}
  cache.put_many([("k1", 0.25, "red"), ("k2", 1.0, "")])
  cache.put_many([("k1", 0.5, "blue")])  # the latest result wins
  cache.close()
  cache = OracleCache(path)
  assert len(cache) == 2
  assert cache.get_many(["k1", "k2", "k3", "k1"]) == {"k1": (0.5, "blue"), "k2": (1.0, "")}
  keys = [f"x{i}" for i in range(1200)]  # more than one SELECT chunk
  cache.put_many((k, float(i), k) for i, k in enumerate(keys))
  found = cache.get_many(keys)
  assert len(found) == 1200 and found["x1199"] == (1199.0, "x1199")
  assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
  path = tmp_path / "oracle_cache.sqlite"
  path.write_bytes(b"this is not sqlite" * 100)
  with pytest.raises(ValueError, match="oracle_cache.sqlite: not a usable SQLite database"):
    OracleCache(str(path))


def test_cached_oracle_sends_only_misses_and_counts_hits(tmp_path):
  spy = SpyOracle()
  oracle = CachedOracle(spy, OracleCache(str(tmp_path / "c.sqlite")))
  assert isinstance(oracle, Oracle)
  assert (oracle.name, oracle.loss, oracle.cache_signature) == ("spy", "vqa", "temperature=0")
  visuals, queries = _visuals(4), _queries(4)
  first = oracle.query(visuals, queries)
  np.testing.assert_allclose(first.losses, visuals.reshape(4, -1).mean(1) / 255.0, rtol=1e-6)
  assert oracle.stats.calls == 4 and oracle.stats.cache_hits == 0
  # Samples 1 and 3 again, with two new ones: only the new ones reach the oracle.
  new = _visuals(2, seed=1)
  mixed_v = np.stack([new[0], visuals[1], new[1], visuals[3]])
  mixed_q = [Query("n0?", ("yes",)), queries[1], Query("n1?", ("yes",)), queries[3]]
  out = oracle.query(mixed_v, mixed_q)
  sent_v, sent_p = spy.seen[-1]
  np.testing.assert_array_equal(sent_v, new)
  assert sent_p == ["n0?", "n1?"]
  np.testing.assert_array_equal(out.losses[[1, 3]], first.losses[[1, 3]])
  assert out.answers[1] == "a-q1?" and out.answers[3] == "a-q3?"
  np.testing.assert_array_equal(out.status, STATUS_OK)
  assert oracle.stats.calls == 6 and oracle.stats.cache_hits == 2
  # Everything cached: the wrapped oracle is not called at all.
  calls_before = len(spy.seen)
  again = oracle.query(visuals, queries)
  assert len(spy.seen) == calls_before
  np.testing.assert_array_equal(again.losses, first.losses)
  assert oracle.stats.calls == 6 and oracle.stats.cache_hits == 6


def test_cached_oracle_is_the_wrapped_oracle_s_budget_and_lifetime(tmp_path):
  spy = SpyOracle()
  oracle = CachedOracle(spy, OracleCache(str(tmp_path / "c.sqlite")))
  assert oracle.exhausted is False
  spy.spent = True
  assert oracle.exhausted is True  # a spent budget shows through the cache
  oracle.close()
  assert spy.closed
  with pytest.raises(TypeError, match="needs an Oracle to wrap, got str"):
    CachedOracle("gpt-4o", OracleCache(str(tmp_path / "d.sqlite")))


def test_only_ok_results_are_cached(tmp_path):
  spy = SpyOracle({"q0?": STATUS_FAILED, "q1?": STATUS_INVALID})
  cache = OracleCache(str(tmp_path / "c.sqlite"))
  oracle = CachedOracle(spy, cache)
  out = oracle.query(_visuals(3), _queries(3))
  np.testing.assert_array_equal(out.status, [STATUS_FAILED, STATUS_INVALID, STATUS_OK])
  assert len(cache) == 1
  spy.status_of_prompt = {}  # the failures succeed when asked again
  out = oracle.query(_visuals(3), _queries(3))
  np.testing.assert_array_equal(out.status, STATUS_OK)
  assert spy.seen[-1][1] == ["q0?", "q1?"] and oracle.stats.cache_hits == 1
  assert oracle.stats.failures == 2


def test_training_and_evaluation_share_one_file(tmp_path):
  path = str(tmp_path / "shared.sqlite")
  train = CachedOracle(SpyOracle(), OracleCache(path))
  train.query(_visuals(3), _queries(3))
  evaluation_spy = SpyOracle()
  evaluation = CachedOracle(evaluation_spy, OracleCache(path))
  out = evaluation.query(_visuals(3), _queries(3))
  assert evaluation_spy.seen == [] and evaluation.stats.cache_hits == 3
  np.testing.assert_allclose(out.losses, _visuals(3).reshape(3, -1).mean(1) / 255.0, rtol=1e-6)


def test_an_unreadable_cache_costs_calls_not_the_run(tmp_path):
  cache = OracleCache(str(tmp_path / "c.sqlite"))
  cache.close()  # every later use raises sqlite3.ProgrammingError
  spy = SpyOracle()
  out = CachedOracle(spy, cache).query(_visuals(2), _queries(2))
  np.testing.assert_array_equal(out.status, STATUS_OK)
  assert spy.stats.calls == 2


def test_with_the_openai_oracle_the_second_pass_sends_nothing(tmp_path, monkeypatch):
  monkeypatch.setenv("OPENAI_API_KEY", "sk-cache-test")
  srv, url = server_lib.serve(server_lib.ColourAnswerer(), api_key="sk-cache-test")
  inner = OpenAIOracle("colour-test", base_url=url, loss="choice")
  oracle = CachedOracle(inner, OracleCache(str(tmp_path / "c.sqlite")))
  try:
    visuals, queries = _visuals(5, seed=7), _queries(5)
    queries = [Query(q.prompt, ("red",), ("red", "green", "blue")) for q in queries]
    first = oracle.query(visuals, queries)
    second = oracle.query(visuals, queries)
    assert len(srv.arrivals) == 5
    np.testing.assert_array_equal(second.losses, first.losses)
    assert second.answers == first.answers
    stats = oracle.stats
    assert (stats.calls, stats.cache_hits) == (5, 5)
    assert "top_logprobs=10" in oracle.cache_signature
    # Other decoding settings are other requests: a cache shared with them does not answer.
    other = OpenAIOracle("colour-test", base_url=url, loss="choice", max_tokens=4)
    oracle2 = CachedOracle(other, oracle.cache)
    oracle2.query(visuals, queries)
    assert len(srv.arrivals) == 10
  finally:
    oracle.close()
    other.close()
    srv.close()


_WRITER = """
import sys
from anonymax.oracles.cache import OracleCache
cache = OracleCache(sys.argv[1])
batch = 0
while True:
  cache.put_many((f"b{batch}-{j}", float(batch), "x" * 2000) for j in range(200))
  batch += 1
"""


def test_a_process_killed_mid_write_leaves_whole_batches(tmp_path):
  path = str(tmp_path / "killed.sqlite")
  OracleCache(path).close()
  proc = subprocess.Popen([sys.executable, "-c", _WRITER, path])
  reader = OracleCache(path)
  try:
    deadline = time.monotonic() + 60
    while len(reader) < 5 * 200 and time.monotonic() < deadline:
      time.sleep(0.05)
    assert proc.poll() is None  # still writing when killed
  finally:
    os.kill(proc.pid, signal.SIGKILL)  # mid-write: it writes without pause
    proc.wait()
  reader.close()
  conn = sqlite3.connect(path)
  assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
  keys = [k for (k,) in conn.execute("SELECT key FROM results")]
  conn.close()
  per_batch = collections.Counter(k.split("-")[0] for k in keys)
  assert len(per_batch) >= 5
  assert set(per_batch.values()) == {200}  # no batch half-written
  cache = OracleCache(path)  # and it can be written again
  cache.put_many([("after", 0.5, "ok")])
  assert cache.get_many(["after"]) == {"after": (0.5, "ok")}
