"""configs/okvqa.py from the launchers, as a user runs it: OK-VQA questions for the black box,
VISPR images for privacy, both read from one manual directory in the real file formats (with the
paper's OK-VQA privacy annotation), and the black box behind the `openai` client (a local
OpenAI-compatible server on 127.0.0.1)."""

import json
import os

import numpy as np
import pytest

from anonymax import privacy_judge, prompts
from anonymax.black_boxes import reference_oracle
from anonymax.data import okvqa_privacy, vispr
from anonymax.oracles.server import serve
from configs import synthetic
from tests.data import test_okvqa, test_okvqa_privacy, test_vispr
from tests.test_end_to_end import ROOT, run_launchers, tiny_real_data_flags

KEY = "sk-test-not-a-real-key"


def _manual_dir(root):
  """OK-VQA and VISPR side by side, as in TFDS's default <data_dir>/downloads/manual."""
  manual = root / "tfds" / "downloads" / "manual"
  manual.mkdir(parents=True)
  test_okvqa.write_release(manual)
  test_vispr.write_release(manual)
  test_okvqa_privacy.write_annotation(manual / okvqa_privacy.ANNOTATION_FILE)
  return manual


@pytest.mark.slow
def test_okvqa_config_trains_and_evaluates_on_real_formats(tmp_path):
  _manual_dir(tmp_path)
  smoke = synthetic.get_config("smoke")
  answerer = reference_oracle(
    cache_dir=str(tmp_path / "reference"),
    image_size=32,
    num_train=smoke.oracle.reference.num_train,
    steps=50,
    progress=False,
  )
  server, url = serve(answerer, api_key=KEY)
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "OPENAI_API_KEY": KEY}
  common = [
    f"--config={os.path.join(ROOT, 'configs', 'okvqa.py')}:oracle=openai,base_url={url}",
    f"--workdir={tmp_path / 'w'}",
    f"--config.data.data_dir={tmp_path / 'tfds'}",
    *tiny_real_data_flags(32),
  ]
  try:
    eval_stdout = run_launchers(common, env)
    arrivals = len(server.arrivals)
    # The summary line says what was not measured instead of failing on it.
    assert "(raw n/a)" in eval_stdout.splitlines()[-1]
  finally:
    server.close()
  result = json.loads((tmp_path / "w" / "eval.json").read_text())
  # Training: 2 steps × 2 perturbations × 2 questions; evaluation: the one test question in the
  # people categories ("seven"), for every row but raw (raw images stay local for openai).
  sent = [r["name"] for r in result["rows"] if r["utility"] is not None]
  assert "raw" not in sent and {"ours", "downsample_x4", "blacken"} <= set(sent)
  # The fixture's image has no face for the detector, so the two detected-face rows show the same
  # image and the persistent cache answers the second: one call fewer than rows.
  assert {"det_face_blur", "det_face_blacken"} <= set(sent)
  assert result["train_oracle_calls"] == 8 and result["eval_oracle_calls"] == len(sent) - 1
  assert arrivals == 8 + len(sent) - 1
  assert result["utility_metric"] == "vqa_accuracy" and result["oracle_loss"] == "vqa"
  assert result["raw_utility"] is None  # not sent: a remote black box sees anonymized pixels only
  assert result["attributes"] == list(vispr.PAPER_ATTRIBUTES)
  assert 0.0 <= result["privacy_cmap"] <= 100.0
  # Privacy on Table 3's two test sets, the annotated OK-VQA test images first (the headline).
  # The people categories' one test image has positives only, so every ranking of it has AP 1.
  assert result["privacy_test_sets"] == ["okvqa", "vispr"]
  vispr_chance = 100.0 * privacy_judge.chance_cmap(np.array(test_vispr.PAPER_TEST, np.float32))
  assert result["chance_cmap_by_set"] == {"okvqa": 100.0, "vispr": pytest.approx(vispr_chance)}
  assert result["chance_cmap"] == 100.0
  for row in result["rows"]:
    okvqa_figures, vispr_figures = (row["privacy_test_sets"][s] for s in ("okvqa", "vispr"))
    assert row["privacy_cmap_max"] == okvqa_figures["privacy_cmap_max"] == 100.0
    assert 0.0 <= vispr_figures["privacy_cmap_max"] <= 100.0
  assert "| ours | 100.0 |" in (tmp_path / "w" / "eval.md").read_text()
  # The short-answer instruction went with the question, and eval.json says so and how it scored.
  assert result["prompt"]["template"] == prompts.VQA_SHORT_ANSWER
  assert result["prompt"]["example"] == (
    "What year was this taken?\nAnswer the question using a single word or phrase."
  )
  assert result["prompt"]["answer_scoring"] == "free_form"
  saved = (tmp_path / "w" / "config.json").read_text()
  assert KEY not in saved and '"vispr"' in saved and '"okvqa"' in saved
