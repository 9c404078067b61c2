"""A persistent oracle cache: a restarted run or an evaluation never pays twice for one answer.

Results are stored in SQLite (WAL journal) keyed by

  key = sha256( json[name, loss, cache_signature, prompt, answers, choices, shape, dtype] ‖ 0x00 ‖
                bytes of the uint8 visual )

i.e. the model, the utility loss, the oracle's decoding settings, the whole query and the exact
bytes that would be uploaded. The anonymizer uses no batch statistics, so one image's anonymized
bytes do not depend on its batch and equal keys really mean equal requests. Training and
evaluation can share one file (WAL lets readers run beside the one writer).

Each batch is written in one transaction: a process killed mid-write leaves the database readable
with every earlier batch complete and none of the interrupted one. Only `STATUS_OK` results are
cached (a failure may succeed later). Hits are not paid calls: `stats.calls` excludes them and
`stats.cache_hits` counts them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence

import numpy as np

from anonymax.oracles.base import (
  STATUS_OK,
  Oracle,
  OracleOutput,
  OracleStats,
  Query,
  to_uint8,
)

log = logging.getLogger(__name__)

_CHUNK = 500  # keys per SELECT (SQLite limits the number of bound parameters)


def cache_key(name: str, loss: str, signature: str, query: Query, visual: np.ndarray) -> str:
  """The hex sha256 identifying one request (see the module docstring)."""
  visual = np.ascontiguousarray(visual)
  head = json.dumps(
    [
      name,
      loss,
      signature,
      query.prompt,
      list(query.answers),
      list(query.choices),
      list(visual.shape),
      visual.dtype.str,
    ]
  )
  h = hashlib.sha256(head.encode("utf-8"))
  h.update(b"\0")
  h.update(visual.tobytes())
  return h.hexdigest()


class OracleCache:
  """Key → (loss, answer) in an SQLite file; safe from several threads of one process.

  Attributes:
    path: the database file.
  """

  def __init__(self, path: str, *, timeout: float = 30.0):
    """Opens (creating if needed) the database at `path`.

    Args:
      path: the SQLite file (its directory is created).
      timeout: seconds to wait for another process's write lock.

    Raises:
      ValueError: naming `path` if it exists but is not an oracle cache database.
    """
    self.path = path
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    self._lock = threading.Lock()
    try:
      # Autocommit mode: transactions are opened explicitly, one per batch.
      self._conn = sqlite3.connect(
        path, timeout=timeout, isolation_level=None, check_same_thread=False
      )
      self._conn.execute("PRAGMA journal_mode=WAL")
      # NORMAL + WAL is atomic and consistent when the process dies; only an OS crash can lose the
      # last transactions (never corrupt the file).
      self._conn.execute("PRAGMA synchronous=NORMAL")
      self._conn.execute(
        "CREATE TABLE IF NOT EXISTS results ("
        "key TEXT PRIMARY KEY, loss REAL NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL)"
      )
    except sqlite3.DatabaseError as e:
      raise ValueError(f"oracle cache {path}: not a usable SQLite database ({e})") from None

  def get_many(self, keys: Sequence[str]) -> dict[str, tuple[float, str]]:
    """The cached (loss, answer) of those `keys` that are present."""
    found: dict[str, tuple[float, str]] = {}
    keys = list(dict.fromkeys(keys))
    with self._lock:
      for lo in range(0, len(keys), _CHUNK):
        chunk = keys[lo : lo + _CHUNK]
        rows = self._conn.execute(
          f"SELECT key, loss, answer FROM results WHERE key IN ({','.join('?' * len(chunk))})",
          chunk,
        ).fetchall()
        found.update((k, (float(loss), answer)) for k, loss, answer in rows)
    return found

  def put_many(self, items: Iterable[tuple[str, float, str]]) -> None:
    """Stores (key, loss, answer) items in one transaction (all or none)."""
    now = time.time()
    rows = [(k, float(loss), str(answer), now) for k, loss, answer in items]
    if not rows:
      return
    with self._lock:
      self._conn.execute("BEGIN IMMEDIATE")
      try:
        self._conn.executemany(
          "INSERT OR REPLACE INTO results (key, loss, answer, created) VALUES (?, ?, ?, ?)", rows
        )
      except BaseException:
        self._conn.execute("ROLLBACK")
        raise
      self._conn.execute("COMMIT")

  def __len__(self) -> int:
    with self._lock:
      return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

  def close(self) -> None:
    with self._lock:
      self._conn.close()


class CachedOracle(Oracle):
  """Any `Oracle` behind an `OracleCache`; an `Oracle` itself.

  Example:
    >>> inner = OpenAIOracle("gpt-4o", loss="choice")
    >>> oracle = CachedOracle(inner, OracleCache(f"{workdir}/oracle_cache.sqlite"))
    >>> out = oracle.query(anonymized_uint8, queries)  # only cache misses reach the server
    >>> oracle.stats.cache_hits  # calls saved

  Attributes:
    oracle: the wrapped oracle.
    cache: the store.
    name, loss, cache_signature, exhausted: those of the wrapped oracle.

  Raises:
    TypeError: if `oracle` is not an `Oracle`.
  """

  def __init__(self, oracle: Oracle, cache: OracleCache):
    if not isinstance(oracle, Oracle):
      raise TypeError(f"CachedOracle needs an Oracle to wrap, got {type(oracle).__name__}")
    super().__init__(name=oracle.name, loss=oracle.loss)
    self.oracle = oracle
    self.cache = cache
    self._hits = 0
    self._seconds = 0.0

  def __repr__(self) -> str:
    return f"CachedOracle({self.oracle!r}, path={self.cache.path!r})"

  @property
  def cache_signature(self) -> str:
    return self.oracle.cache_signature

  @property
  def exhausted(self) -> bool:
    return self.oracle.exhausted

  @property
  def stats(self) -> OracleStats:
    """The wrapped oracle's counters (paid calls, tokens, cost, failures), hits and wall time."""
    inner = self.oracle.stats
    return dataclasses.replace(
      inner, cache_hits=inner.cache_hits + self._hits, seconds=self._seconds
    )

  def query(self, visuals: np.ndarray, queries: Sequence[Query]) -> OracleOutput:
    """Answers hits from the cache and sends only the misses to the wrapped oracle."""
    start = time.perf_counter()
    visuals = to_uint8(visuals)
    if len(visuals) != len(queries):
      raise ValueError(f"{len(visuals)} visuals but {len(queries)} queries")
    n = len(queries)
    sig = self.cache_signature
    keys = [
      cache_key(self.name, self.loss, sig, q, v) for q, v in zip(queries, visuals, strict=True)
    ]
    try:
      hits = self.cache.get_many(keys)
    except sqlite3.Error as e:  # an unreadable cache costs money, never the run
      log.warning("oracle cache %s unreadable (%s); querying the oracle", self.cache.path, e)
      hits = {}
    losses = np.zeros(n, np.float32)
    status = np.full(n, STATUS_OK, np.int32)
    answers = [""] * n
    misses = []
    for i, k in enumerate(keys):
      if k in hits:
        losses[i], answers[i] = hits[k]
      else:
        misses.append(i)
    self._hits += n - len(misses)
    if misses:
      out = self.oracle.query(visuals[misses], [queries[i] for i in misses])
      fresh = {}
      for j, i in enumerate(misses):
        losses[i], status[i], answers[i] = out.losses[j], out.status[j], out.answers[j]
        if out.status[j] == STATUS_OK and np.isfinite(out.losses[j]):
          fresh[keys[i]] = (float(out.losses[j]), out.answers[j])
      try:
        self.cache.put_many((k, loss, a) for k, (loss, a) in fresh.items())
      except sqlite3.Error as e:
        log.warning("oracle cache %s not written (%s)", self.cache.path, e)
    self._seconds += time.perf_counter() - start
    return OracleOutput(losses, status, answers)

  def close(self) -> None:
    """Closes the wrapped oracle and the cache."""
    self.oracle.close()
    self.cache.close()
