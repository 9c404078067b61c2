"""benchmarks/gpu_run.sh and its report: the paths it needs, the projection, a reduced run."""

import json
import os
import subprocess
import sys

import pytest

from anonymax.configs import hmdb51_vispr, okvqa
from anonymax.evaluation_rows import DETECTED_FACE_ROWS, WHOLE_IMAGE_ROWS
from tests import benchmark_scripts
from tests.test_end_to_end import ROOT, tiny_real_data_flags

report = benchmark_scripts.load("gpu_run_report")
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_run.sh")


def run_script(out, **env):
  """gpu_run.sh with only `env` set of its variables, on this interpreter."""
  clean = {k: v for k, v in os.environ.items() if k not in ("LLAVA", "VIDEO_LLAVA", "DATA_DIR")}
  clean.update(PYTHON=sys.executable, JAX_PLATFORMS="cpu", **env)
  return subprocess.run(
    ["bash", SCRIPT, str(out)], env=clean, capture_output=True, text=True, timeout=900
  )


def test_without_weights_or_data_it_names_what_it_needs_and_starts_nothing(tmp_path):
  proc = run_script(tmp_path / "out")
  assert proc.returncode == 2
  lines = proc.stdout.splitlines()
  assert any(line.startswith("missing: VIDEO_LLAVA: not set") for line in lines)
  assert any(line.startswith("missing: LLAVA: not set") for line in lines)
  assert any(line.startswith("missing: DATA_DIR: not set") for line in lines)
  assert not (tmp_path / "out").exists()


def test_every_missing_dataset_path_and_model_file_is_named_once(tmp_path):
  (tmp_path / "data" / "downloads" / "manual").mkdir(parents=True)
  (tmp_path / "llava").mkdir()
  problems = report.missing_paths(
    ["1", "3"], llava=str(tmp_path / "llava"), video_llava="", data_dir=str(tmp_path / "data")
  )
  manual = tmp_path / "data" / "downloads" / "manual"
  text = "\n".join(problems)
  assert f"LLAVA={tmp_path / 'llava'}: no config.json" in text
  assert "VIDEO_LLAVA: not set" in text
  for path in (
    manual / "annotations" / "train2017",  # VISPR
    manual / "hmdb51",
    manual / "testTrainMulti_7030_splits",
    manual / "PrivacyAttributes",  # PA-HMDB51
    manual / "OpenEnded_mscoco_val2014_questions.json",  # OK-VQA
    manual / "okvqa_privacy_attributes.json",
  ):
    assert str(path) in text, path
  assert len(problems) == len(set(problems)) == 7  # 2 models, VISPR, HMDB51, PA-HMDB51, OK-VQA ×2
  # Table 3 alone needs neither Video-LLaVA nor the videos.
  only_vqa = "\n".join(report.missing_paths(["3"], llava="", video_llava="", data_dir=""))
  assert "VIDEO_LLAVA" not in only_vqa and "LLAVA: not set" in only_vqa


def test_projection_is_the_documented_formula():
  # [S·t_step + c·(N/n)·t_sample + (E − c·t_sample)·(J/j)] / 3600, by hand:
  # 500·2 + 90·0.5·(100/10) + (100 − 45)·(3000/300) = 1000 + 450 + 550 = 2000 s.
  hours = report.column_hours(
    t_step=2.0, t_sample=0.5, full_steps=500, eval_calls=90, n=10, full_n=100,
    eval_seconds=100.0, judge_steps=300, full_judge_steps=3000,
  )  # fmt: skip
  assert hours == pytest.approx(2000 / 3600)
  # An evaluation the black box took all of leaves nothing for the judges to scale.
  assert report.column_hours(
    t_step=0.0, t_sample=1.0, full_steps=0, eval_calls=10, n=10, full_n=20,
    eval_seconds=8.0, judge_steps=1, full_judge_steps=10,
  ) == pytest.approx(20 / 3600)  # fmt: skip


def test_rates_are_steady_state_differences_of_the_logged_counters():
  rows = [
    dict(step=s, wall_seconds=w, oracle_seconds=o, oracle_samples=16 * s)
    for s, w, o in ((10, 100.0, 5.0), (20, 120.0, 9.0), (30, 140.0, 13.0), (40, 160.0, 17.0))
  ]
  rates = report.steady_rates(rows)  # from step 20 (the middle row) to step 40
  assert rates["seconds_per_step"] == pytest.approx(40.0 / 20)
  assert rates["oracle_seconds_per_step"] == pytest.approx(8.0 / 20)
  assert rates["oracle_seconds_per_sample"] == pytest.approx(8.0 / (16 * 20))


def test_peak_memory_reads_nvidia_smi_csv(tmp_path):
  log = tmp_path / "mem.csv"
  log.write_text("1200\n35000\n[N/A]\n34000\n")
  assert report.peak_memory_mib(str(log)) == 35000.0
  assert report.peak_memory_mib(str(tmp_path / "absent.csv")) is None


def test_plan_counts_calls_from_the_configs_and_prices_the_cloud_tables():
  rows = {(r["table"], r["column"]): r for r in report.plan(["1", "3", "4"], None)}
  video = hmdb51_vispr.get_config()
  per_step = 2 * video.optim.num_samples * video.batch_size
  hmdb = rows[("1", "HMDB51-VISPR")]
  assert hmdb["train_calls"] == video.total_steps * per_step
  # raw, the whole-image and detected-face baselines and ours, on PA-HMDB51's 515 videos.
  assert hmdb["eval_calls"] == (2 + len(WHOLE_IMAGE_ROWS) + len(DETECTED_FACE_ROWS)) * 515
  cloud = rows[("4", "OK-VQA")]
  # Raw images never go to a cloud model: one row fewer.
  assert cloud["eval_calls"] == (1 + len(WHOLE_IMAGE_ROWS) + len(DETECTED_FACE_ROWS)) * 5046
  vqa = okvqa.get_config()
  assert cloud["input_tokens_per_call"] == report.image_tokens(vqa.data.image_size) + 60 // 4
  calls = cloud["train_calls"] + cloud["eval_calls"]
  want = calls * (cloud["input_tokens_per_call"] * 2.50 + 16 * 10.00) / 1e6
  assert cloud["cost_usd_max"] == pytest.approx(want)


def test_image_tokens_follow_openais_tiling_rule():
  assert report.image_tokens(224) == 85 + 170  # one tile
  assert report.image_tokens(1024) == 85 + 170 * 4  # scaled to 768: 2×2 tiles (OpenAI's example)
  assert report.image_tokens(4096) == 85 + 170 * 4  # fitted to 2048, then 768


@pytest.mark.slow
@pytest.mark.hf
def test_a_reduced_table3_run_through_the_script_reports_its_cost(tmp_path):
  pytest.importorskip("transformers")
  from tests.oracles import tiny_hf_models  # noqa: PLC0415
  from tests.test_real_data_end_to_end import _manual_dir  # noqa: PLC0415

  _manual_dir(tmp_path)
  tiny_hf_models.save_tiny_llava(str(tmp_path / "llava"))
  out = tmp_path / "out"
  proc = run_script(
    out,
    LLAVA=str(tmp_path / "llava"),
    DATA_DIR=str(tmp_path / "tfds"),
    TABLES="3",
    STEPS="2",
    NUM_TEST="1",
    JUDGE_STEPS="3",
    DEVICE="cpu",
    EXTRA_FLAGS=" ".join(f.replace(" ", "") for f in tiny_real_data_flags(32)),  # split on spaces
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  (row,) = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
  assert row["table"] == "3" and row["test_examples"] == 1
  assert row["seconds_per_step"] > 0 and row["oracle_seconds_per_step"] > 0
  eval_json = (out / "table3" / "eval.json").read_text()
  result = json.loads(eval_json)
  assert row["eval_oracle_calls"] == result["eval_oracle_calls"] > 0
  assert result["privacy_test_sets"] == ["okvqa", "vispr"]
  # The projection counted OK-VQA's people-centred test questions in the fixture (one).
  n_full, source = report.test_size("okvqa", str(tmp_path / "tfds"))
  assert (n_full, source) == (1, "counted")
  assert row["projected_table_gpu_hours"] == pytest.approx(row["projected_gpu_hours"]["OK-VQA"])
  assert row["projected_gpu_hours"]["OK-VQA"] > 0
  # A second run into the same OUT is refused, and the first one's files stay.
  again = run_script(
    out, LLAVA=str(tmp_path / "llava"), DATA_DIR=str(tmp_path / "tfds"), TABLES="3"
  )
  assert again.returncode == 2 and "exists" in again.stderr
  assert (out / "table3" / "eval.json").read_text() == eval_json
