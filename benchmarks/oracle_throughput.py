r"""Throughput of the `openai` oracle under concurrency, against a local fixed-latency server.

The local OpenAI-compatible server (`anonymax.oracles.server`) answers every request after a fixed
`--latency-ms`; the oracle sends `--requests` requests (one batch, as a training step would) at
concurrency 1 and at `--concurrency`, through the real client and real HTTP on 127.0.0.1. Measured in
the same run:

  speedup = seconds at concurrency 1 / seconds at concurrency C      (ideal = C)

  python benchmarks/oracle_throughput.py                     # 256 requests, 200 ms, C = 16 (~1 min)
  python benchmarks/oracle_throughput.py --requests 64       # quicker

Last line: `speedup=<x> ideal=<C>`; the goal is speedup ≥ 0.8 × ideal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

import numpy as np

from anonymax.oracles.base import STATUS_OK, Query
from anonymax.oracles.openai import OpenAIOracle
from anonymax.oracles.server import ColourAnswerer, serve

_KEY_ENV = "ANONYMAX_BENCH_KEY"


@contextlib.contextmanager
def local_server(latency_s: float, in_process: bool):
  """Yields the base URL of a fixed-latency server, in its own process unless `in_process`.

  A separate process is the realistic setting (the black box is elsewhere) and keeps the server's
  JSON and image decoding from competing with the client for one interpreter lock.
  """
  if in_process:
    server, url = serve(ColourAnswerer(), api_key=os.environ[_KEY_ENV], latency_s=latency_s)
    try:
      yield url
    finally:
      server.close()
    return
  launcher = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch")
  cmd = [sys.executable, os.path.join(launcher, "reference_server.py"), "--answerer", "colour"]
  cmd += ["--port", "0"]
  cmd += ["--latency-ms", str(latency_s * 1000.0), "--api-key-env", _KEY_ENV]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
  try:
    line = proc.stdout.readline()
    if not line.startswith("serving "):
      raise RuntimeError(f"the server did not start: {line!r}")
    yield line.split()[-1]
  finally:
    proc.terminate()
    proc.wait()


def run(requests: int, concurrency: int, url: str, image_size: int) -> float:
  """Seconds to score `requests` samples in one `query` at the given concurrency."""
  oracle = OpenAIOracle(
    "colour-bench", base_url=url, api_key_env=_KEY_ENV, concurrency=concurrency, timeout=60.0
  )
  rng = np.random.default_rng(0)
  visuals = rng.integers(0, 256, (requests, image_size, image_size, 3), np.uint8)
  queries = [Query(f"What colour is picture {i}?", ("red",)) for i in range(requests)]
  try:
    oracle.query(visuals[:1], queries[:1])  # warm-up: client, event loop, first connection
    start = time.perf_counter()
    out = oracle.query(visuals, queries)
    seconds = time.perf_counter() - start
  finally:
    oracle.close()
  ok = int(np.sum(out.status == STATUS_OK))
  if ok != requests:
    raise RuntimeError(f"only {ok}/{requests} requests succeeded at concurrency {concurrency}")
  return seconds


def main():
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--requests", type=int, default=256, help="requests per measurement")
  parser.add_argument("--latency-ms", type=float, default=200.0, help="server latency per request")
  parser.add_argument("--concurrency", type=int, default=16, help="compared against 1")
  parser.add_argument("--image-size", type=int, default=32, help="side of the uploaded images")
  parser.add_argument(
    "--in-process", action="store_true", help="run the server in this process (one GIL for both)"
  )
  args = parser.parse_args()
  os.environ.setdefault(_KEY_ENV, "local-benchmark")
  latency = args.latency_ms / 1000.0

  rows = []
  for c in (1, args.concurrency):
    with local_server(latency, args.in_process) as url:
      seconds = run(args.requests, c, url, args.image_size)
    ideal = args.requests * latency / c
    rows.append((c, seconds, args.requests / seconds, ideal))
  print(f"{'concurrency':>11} {'seconds':>9} {'req/s':>8} {'ideal s':>8}")
  for c, seconds, rate, ideal in rows:
    print(f"{c:>11d} {seconds:>9.2f} {rate:>8.1f} {ideal:>8.2f}")
  speedup = rows[0][1] / rows[1][1]
  print(f"speedup={speedup:.2f} ideal={args.concurrency}")


if __name__ == "__main__":
  main()
