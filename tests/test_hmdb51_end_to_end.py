"""configs/hmdb51_vispr.py from the launchers, as a user runs it: HMDB51 clips for a local
Video-LLaVA (a tiny one, built from a config), VISPR images for privacy, and PA-HMDB51 as the test
set, as the paper does: the black box names the actions of PA-HMDB51's clips and the judges,
trained on anonymized VISPR images, are scored on PA-HMDB51's anonymized frames. Everything is
read from one manual directory in the real formats."""

import json
import os

import numpy as np
import pytest

from anonymax import experiment, privacy_judge, run_config
from anonymax.data import pa_hmdb51
from tests.data import test_hmdb51, test_pa_hmdb51, test_vispr
from tests.data.test_vispr import PA_TRAIN
from tests.oracles import tiny_hf_models
from tests.test_end_to_end import ROOT, run_launchers, tiny_real_data_flags

T, S = 4, 16


def _manual_dir(root):
  """HMDB51 (videos, split files), PA-HMDB51's annotations beside them, and VISPR."""
  manual = root / "tfds" / "downloads" / "manual"
  manual.mkdir(parents=True)
  test_hmdb51.write_hmdb51(str(manual))
  # PA-HMDB51 annotates HMDB51 videos: two of its three are in the split files above too.
  test_pa_hmdb51.write_pa_hmdb51(str(manual))
  test_vispr.write_release(manual)
  return manual


@pytest.mark.slow
def test_hmdb51_config_is_judged_on_pa_hmdb51_through_the_launchers(tmp_path):
  _manual_dir(tmp_path)
  model = tmp_path / "video-llava"
  tiny_hf_models.save_tiny_video_llava(str(model))
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  workdir = tmp_path / "w"
  common = [
    f"--config={os.path.join(ROOT, 'configs', 'hmdb51_vispr.py')}:model={model}",
    f"--workdir={workdir}",
    f"--config.data.data_dir={tmp_path / 'tfds'}",
    "--config.oracle.hf.device=cpu",
    f"--config.data.clip_length={T}",
    *tiny_real_data_flags(S),
  ]
  run_launchers(common, env)
  result = json.loads((workdir / "eval.json").read_text())
  # Privacy: PA-HMDB51's five attributes, judged on its 3 videos × T frames with each frame's
  # own label; the chance floor is measured on exactly those labels.
  assert result["privacy_test_sets"] == ["pa_hmdb51"]
  assert result["attributes"] == list(pa_hmdb51.ATTRIBUTES)
  frames = [row for name in (test_pa_hmdb51.A, test_pa_hmdb51.B, test_pa_hmdb51.C)
            for row in test_pa_hmdb51.FRAME_LABELS[name]]  # fmt: skip
  chance = 100.0 * privacy_judge.chance_cmap(np.array(frames, np.float32))
  assert result["chance_cmap"] == pytest.approx(chance)
  for row in result["rows"]:
    assert set(row["per_attribute_ap"]) == set(pa_hmdb51.ATTRIBUTES)
    assert row["privacy_test_sets"]["pa_hmdb51"]["privacy_cmap_max"] == row["privacy_cmap_max"]
    assert 0.0 <= row["privacy_cmap_max"] <= 100.0
  # Utility: the local Video-LLaVA named the action of PA-HMDB51's 3 clips for every row (raw
  # included: the black box is local), after 2 training steps × 2 perturbations × 2 clips. The
  # fixture's frames are each of one colour and show no face, so whole-image blur and downsampling
  # and the detected-face rows give back the raw clips, which the persistent cache answers: only
  # raw, blacken and ours are paid for, 3 clips each.
  assert result["utility_metric"] == "action_top1" and result["oracle_loss"] == "nll"
  names = [row["name"] for row in result["rows"]]
  assert {"raw", "blacken", "ours", "det_face_blur", "blur_strong"} <= set(names)
  assert all(row["utility"] is not None for row in result["rows"])
  assert result["train_oracle_calls"] == 8
  assert result["eval_oracle_calls"] == 3 * 3
  # Training saw HMDB51's split-1 training videos without PA-HMDB51's (April_09 is in both), and
  # VISPR's labels in PA-HMDB51's five columns.
  run = run_config.load(str(workdir))
  assert run.data.options.exclude_pa_hmdb51 and run.privacy_data.options.attributes == "pa_hmdb51"
  train = experiment.load_split(run, "train")
  assert [train.class_names[i] for i in train.labels] == ["cartwheel", "wave"]
  privacy = experiment.load_split(run, "train", privacy=True)
  np.testing.assert_array_equal(privacy.privacy, np.array(PA_TRAIN, np.float32))
