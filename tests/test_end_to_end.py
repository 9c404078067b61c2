"""The README's smoke commands, as a user runs them: train, then evaluate, from the launchers."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_then_eval(tmp_path, variants: str):
  """Runs launch/train.py on `configs/synthetic.py:<variants>`, then launch/eval.py with only
  --workdir, as a user does; returns (train's flags, the environment)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  common = [
    "--config=" + os.path.join(ROOT, "configs", "synthetic.py") + ":" + variants,
    f"--workdir={tmp_path / 'w'}",
    f"--config.data.data_dir={tmp_path / 'tfds'}",
    f"--config.oracle.reference.cache_dir={tmp_path / 'reference'}",
  ]
  run_launchers(common, env, eval_flags=[f"--workdir={tmp_path / 'w'}"])
  return common, env


def launch(script: str, flags, env, timeout=900) -> subprocess.CompletedProcess:
  """Runs launch/<script> with `flags` as a user would."""
  return subprocess.run(
    [sys.executable, os.path.join(ROOT, "launch", script), *flags],
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def tiny_real_data_flags(image_size: int) -> list[str]:
  """Flags that shrink a real-data config (configs/okvqa.py, configs/hmdb51_vispr.py) to tiny
  models and sizes for a test through the launchers: the point is the data path, not the figures."""
  return [
    f"--config.data.image_size={image_size}",
    f"--config.privacy_data.image_size={image_size}",
    "--config.anonymizer.features=(8, 16)",
    "--config.anonymizer.groups=4",
    "--config.reviewer.name=resnet_tiny",
    "--config.eval.judges.resnet50.model=resnet_tiny",
    "--config.eval.judges.resnet50.steps=3",
    "--config.eval.judges.resnet50.batch_size=4",
    "--config.batch_size=2",
    "--config.privacy_batch_size=2",
    "--config.total_steps=2",
    "--config.checkpoint_every=2",
    "--config.log_every=1",
  ]


def run_launchers(flags, env, *, eval_flags=None) -> str:
  """launch/train.py with `flags`, then launch/eval.py with `eval_flags` (default: the same);
  returns eval.py's stdout."""
  for script, args in (
    ("train.py", flags),
    ("eval.py", flags if eval_flags is None else eval_flags),
  ):
    proc = launch(script, args, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


@pytest.mark.slow
def test_smoke_train_then_eval_writes_the_reported_files(tmp_path):
  common, env = _train_then_eval(tmp_path, "smoke")
  workdir = tmp_path / "w"
  result = json.loads((workdir / "eval.json").read_text())
  for key in ("utility", "privacy_cmap", "raw_utility", "raw_privacy_cmap", "oracle_calls"):
    assert key in result
  assert 0.0 <= result["utility"] <= 100.0 and 0.0 <= result["privacy_cmap"] <= 100.0
  # Training sent 2·q·B anonymized samples per step to the black box.
  assert result["train_oracle_calls"] > 0
  assert result["oracle_loss"] == "nll"
  table = (workdir / "eval.md").read_text()
  names = [r["name"] for r in result["rows"]]
  assert names[0] == "raw" and names[-1] == "ours" and "blacken" in names
  for row in result["rows"]:
    shown = f"**{row['name']}**" if row["name"] == "ours" else row["name"]
    assert f"| {shown} |" in table
    assert {"utility", "privacy_cmap_max", "privacy_cmap_mean", "per_attribute_ap"} <= set(row)
  assert result["split"] == "test" and 0.0 < result["chance_cmap"] < 100.0
  assert (workdir / "tradeoff.png").stat().st_size > 1000
  assert (workdir / "samples.png").stat().st_size > 1000
  assert (workdir / "metrics.jsonl").exists()
  _anonymize_own_files(tmp_path, env)
  # A --config of another run is refused with one line naming the field, and nothing is written.
  before = (workdir / "eval.json").read_text()
  other = [
    f"--config={os.path.join(ROOT, 'configs', 'synthetic.py')}:smoke",
    f"--workdir={workdir}",
  ]
  proc = launch("eval.py", [*other, "--config.optim.gains.a=0.5"], env)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: config.optim.gains.a=0.5 but ")
  assert (workdir / "eval.json").read_text() == before
  # The same run's config with other evaluation settings is accepted.
  accepted = launch("eval.py", [*common, "--config.eval.judge_steps_scale=0.1"], env)
  assert accepted.returncode == 0, accepted.stderr[-3000:]


def _anonymize_own_files(tmp_path, env):
  """launch/anonymize.py with only --workdir: good files written at their own size, a truncated
  one named and skipped (exit status 1), odd modes OK."""
  import numpy as np
  from PIL import Image

  inputs = tmp_path / "mine"
  inputs.mkdir()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (40, 50, 3), np.uint8)).save(inputs / "photo.png")
  Image.fromarray(rng.integers(0, 256, (20, 20), np.uint8), "L").save(inputs / "gray.png")
  (inputs / "broken.jpg").write_bytes((inputs / "photo.png").read_bytes()[:60])
  from anonymax.data import video_files
  from tests.data.test_video_files import smooth_frames

  video_files.write_video(str(inputs / "walk.mp4"), smooth_frames(20, 40, 48), 12)
  (inputs / "cut.mov").write_bytes((inputs / "walk.mp4").read_bytes()[:150])
  out = tmp_path / "out"
  script = os.path.join(ROOT, "launch", "anonymize.py")
  workdir = f"--workdir={tmp_path / 'w'}"
  proc = subprocess.run(
    [sys.executable, script, workdir, f"--inputs={inputs}", f"--output={out}"],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1, proc.stderr[-3000:]  # 1: some files were skipped
  assert "skipped " + str(inputs / "broken.jpg") in proc.stderr
  assert "skipped " + str(inputs / "cut.mov") in proc.stderr
  assert proc.stdout.strip().splitlines()[-1] == f"wrote 3 file(s) to {out}; 2 skipped"
  # Each image keeps its size (the smoke run's 32 px training size is not imposed on it).
  for name, shape in (("photo.png", (40, 50, 3)), ("gray.png", (20, 20, 3))):
    img = np.asarray(Image.open(out / name))
    assert img.shape == shape and img.dtype == np.uint8
  # The video: every frame anonymized at its own size, same rate; the smoke anonymizer is still
  # near the identity, so each frame is close to its source frame.
  frames, fps = video_files.read_video(str(out / "walk.mp4"))
  source, _ = video_files.read_video(str(inputs / "walk.mp4"))
  assert frames.shape == (20, 40, 48, 3) and fps == 12
  dist = np.abs(frames[:, None].astype(int) - source[None].astype(int)).mean(axis=(2, 3, 4))
  np.testing.assert_array_equal(dist.argmin(axis=1), np.arange(20))
  assert sorted(os.listdir(out)) == ["gray.png", "photo.png", "walk.mp4"]
  missing = subprocess.run(
    [sys.executable, script, workdir, f"--inputs={inputs / 'nope.png'}", f"--output={out}"],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert missing.returncode == 2 and "nope.png does not exist" in missing.stderr


@pytest.mark.slow
def test_smoke_clips_train_then_eval(tmp_path):
  """The video path: short clips, frame-wise anonymization, action Top-1 through the black box."""
  _train_then_eval(tmp_path, "smoke,clips")
  result = json.loads((tmp_path / "w" / "eval.json").read_text())
  assert result["utility_metric"] == "action_top1"
  # smoke: 6 steps × 2q·B = 2·1·8 clips sent per step.
  assert result["train_oracle_calls"] == 6 * 2 * 8
  assert 0.0 <= result["utility"] <= 100.0 and result["raw_utility"] is not None
  assert 0.0 <= result["privacy_cmap"] <= 100.0
  assert (tmp_path / "w" / "samples.png").stat().st_size > 1000
