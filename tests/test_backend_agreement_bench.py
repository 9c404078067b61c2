"""Tests for benchmarks/backend_agreement.py: a step repeated on one backend agrees bit for bit."""

from __future__ import annotations

import re

import pytest

from tests import benchmark_scripts

bench = benchmark_scripts.load("backend_agreement")


def test_the_same_steps_twice_on_the_cpu_agree_exactly(tmp_path, capsys):
  diff = bench.main(["--backends", "cpu,cpu", "--steps", "2", "--data-dir", str(tmp_path)])
  out = capsys.readouterr().out.strip().splitlines()
  assert diff == 0.0 and out[-1] == "max_rel_param_diff=0.000e+00"
  rows = [line.split() for line in out if re.match(r"\s+\d+\s", line)]
  assert [r[0] for r in rows] == ["0", "1"]
  for _, l_mllm_a, l_mllm_b, l_priv_a, l_priv_b, rel_g, pixels in rows:
    assert l_mllm_a == l_mllm_b and l_priv_a == l_priv_b
    assert float(rel_g) == 0.0 and float(pixels) == 0.0
  # The mean-pixel black box really scored the anonymizations: a loss strictly inside (0, 1).
  assert all(0.0 < float(r[1]) < 1.0 for r in rows)


def test_backends_must_name_two():
  with pytest.raises(SystemExit):
    bench.main(["--backends", "cpu"])
