"""launch/experiments.py end to end: a two-row suite, killed in its second row, then resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from anonymax import suites
from tests.test_end_to_end import ROOT, launch


@pytest.mark.slow
def test_a_two_row_suite_runs_end_to_end_and_resumes_after_a_kill(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
  out = tmp_path / "suite"
  flags = [
    "--suite=smoke",
    f"--out={out}",
    f"--set=data.data_dir={tmp_path / 'tfds'}",
    f"--set=oracle.reference.cache_dir={tmp_path / 'reference'}",
  ]
  ours = out / "runs" / "ours" / "seed_0"
  spsa = out / "runs" / "spsa" / "seed_0"
  proc = subprocess.Popen(
    [sys.executable, os.path.join(ROOT, "launch", "experiments.py"), *flags],
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  # SIGKILL once the second row (SPSA) has its first checkpoint: the first row is finished.
  deadline = time.time() + 900
  while not (spsa / "checkpoints" / "3").is_dir() and time.time() < deadline:
    if proc.poll() is not None:
      break
    time.sleep(0.05)
  killed = proc.poll() is None
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert killed, "the suite finished (or failed) before it could be killed"
  assert not (spsa / "result.json").exists()
  first = (ours / "result.json").read_bytes()
  first_mtime = os.stat(ours / "result.json").st_mtime_ns

  done = launch("experiments.py", flags, env)
  assert done.returncode == 0, done.stderr[-3000:]
  # The finished row was not rerun; the killed one finished.
  assert (ours / "result.json").read_bytes() == first
  assert os.stat(ours / "result.json").st_mtime_ns == first_mtime
  result = json.loads((spsa / "result.json").read_text())
  assert result["step"] == 6
  assert json.loads((spsa / "config.json").read_text())["optim"]["zo_method"] == "spsa"
  assert "--config.optim.zo_method=spsa" in result["train_command"]
  assert 0.0 <= result["utility"] <= 100.0 and 0.0 <= result["privacy_cmap_max"] <= 100.0

  # The method's row carries the evaluation protocol's rows, from launch/eval.py's eval.json.
  ours_result = json.loads(first)
  names = [r["name"] for r in ours_result["evaluation_rows"]]
  assert names[0] == "raw" and names[-1] == "ours"
  assert {"blacken", "obf_face_blacken", "obf_person_blur_strong"} <= set(names)
  evaluation = json.loads((ours / "eval.json").read_text())
  assert ours_result["privacy_cmap_max"] == evaluation["privacy_cmap"]

  report = (out / "README.md").read_text()
  assert "2 of 2 runs finished" in report
  assert (
    f"- spsa ({result['seconds'] / 60:.1f} min to train and score): `{result['train_command']}`"
    in report
  )
  assert "| obf_face_blacken | baseline |" in report
  assert (out / "tradeoff.png").stat().st_size > 1000
  # The method's raw vs anonymized grid beside the report; both rows as points of their fronts,
  # with hypervolumes against the raw row of the method's evaluation.
  assert (out / "samples.png").read_bytes() == (ours / "samples.png").read_bytes()
  assert "![samples](samples.png)" in report
  assert result["weights"] == list(json.loads((spsa / "config.json").read_text())["optim"][
    "scalarization"]["weights"])  # fmt: skip
  assert "**ours has the front with the largest hypervolume**" in report
  assert (out / "fronts.png").stat().st_size > 1000
  assert (out / "landscape.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  # Table 6's calls to the validation target: a tuned on the smoke grid's tuning seed 0, then
  # the reported run on seed 1, at most 2 q B steps calls (q = 1, B = 8, 4 steps).
  settings = suites.calls_settings("smoke", quick=False)
  for row_dir in (ours, spsa):
    calls = json.loads((row_dir / "calls.json").read_text())
    tuning = json.loads((row_dir.parent / "calls_tuning.json").read_text())
    assert [r["a"] for r in tuning["runs"]] == list(settings["grid"])
    best = min(tuning["runs"], key=lambda r: (r["calls_counted"], r["a"]))
    assert calls["chosen_a"] == tuning["chosen_a"] == best["a"]
    assert calls["seed"] == 0 and calls["train_seed"] == 1
    assert calls["a"] == best["a"] and calls["curve"][0][1] == 0
    assert 0 < calls["calls_counted"] <= 2 * 8 * 4
    assert calls["missed"] == (calls["calls_to_target"] is None)
  assert "### Oracle calls to a fixed validation target" in report
  assert "**calls to a fixed validation target: ours < SPSA-GC < SPSA**: not measured" in report

  # The same folder with other settings is refused with one line naming the file.
  other = launch("experiments.py", [*flags, "--quick"], env)
  assert other.returncode == 2
  assert f"{out / 'suite.json'}: this folder holds a suite with quick=False" in other.stderr
