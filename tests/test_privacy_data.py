"""Two datasets, as in the paper: utility examples from `config.data`, privacy examples from
`config.privacy_data` (e.g. OK-VQA + VISPR). Here both are synthetic, drawn with other seeds and
sizes, so every array can be traced back to the split it came from."""

import ml_collections
import numpy as np
import pytest

from anonymax import evaluate, experiment, privacy_judge, run_config, train
from anonymax.black_boxes import make_oracle
from anonymax.configs import okvqa, synthetic
from anonymax.data.pipeline import Split
from anonymax.step import pipelined
from tests.test_train import SpyOracle


def _two_dataset_config(tmp_path):
  c = synthetic.get_config("smoke")
  c.data.data_dir = str(tmp_path / "tfds")
  c.total_steps = 2
  c.checkpoint_every = 2
  c.eval.judges.resnet_tiny.steps = 2
  with c.unlocked():
    c.privacy_data = ml_collections.ConfigDict(c.data.to_dict())
  c.privacy_data.data_dir = str(tmp_path / "tfds")
  c.privacy_data.seed = 7  # other images than the utility dataset's
  c.privacy_data.num_train = 48
  c.privacy_data.num_test = 24
  return c


def _rows_of(batch: np.ndarray, split: Split) -> bool:
  flat = split.visuals.reshape(len(split), -1)
  return all(np.any(np.all(flat == row, axis=1)) for row in batch.reshape(len(batch), -1))


def test_privacy_batches_and_the_judge_use_the_privacy_dataset(tmp_path, monkeypatch):
  config = _two_dataset_config(tmp_path)
  assert experiment.has_privacy_data(config)
  utility_train = experiment.load_split(config, "train")
  privacy_train = experiment.load_split(config, "train", privacy=True)
  privacy_test = experiment.load_split(config, "test", privacy=True)
  assert len(privacy_train) == 48 and len(privacy_test) == 24
  assert not np.array_equal(privacy_train.visuals[:8], utility_train.visuals[:8])

  seen = {"u": [], "p": []}
  real_call = pipelined.PipelinedStep.__call__

  def spying_call(self, state, u_visuals, u_ids, p_visuals, p_labels, **kwargs):
    seen["u"].append(np.array(u_visuals))
    seen["p"].append((np.array(p_visuals), np.array(p_labels)))
    return real_call(self, state, u_visuals, u_ids, p_visuals, p_labels, **kwargs)

  monkeypatch.setattr(pipelined.PipelinedStep, "__call__", spying_call)
  state = train.train_and_evaluate(config, str(tmp_path / "w"), oracle=SpyOracle())
  assert int(state.step) == 2 and len(seen["p"]) == 2
  for u_visuals in seen["u"]:
    assert _rows_of(u_visuals, utility_train)
  for p_visuals, p_labels in seen["p"]:
    assert _rows_of(p_visuals, privacy_train) and not _rows_of(p_visuals, utility_train)
    # The labels travel with their images.
    flat = privacy_train.visuals.reshape(48, -1)
    idx = [int(np.flatnonzero(np.all(flat == row, axis=1))[0]) for row in p_visuals.reshape(8, -1)]
    np.testing.assert_array_equal(p_labels, privacy_train.privacy[idx])

  judged = []
  real_judge_rows = privacy_judge.judge_rows

  def spying_judge_rows(rows, train_labels, test_labels, judges, **kwargs):
    judged.extend((len(a), len(train_labels), len(b), len(test_labels)) for a, b in rows.values())
    np.testing.assert_array_equal(train_labels, privacy_train.privacy)
    np.testing.assert_array_equal(test_labels, privacy_test.privacy)
    return real_judge_rows(rows, train_labels, test_labels, judges, **kwargs)

  monkeypatch.setattr(privacy_judge, "judge_rows", spying_judge_rows)
  run = run_config.resolve(str(tmp_path / "w"))  # the privacy data come from the saved config
  result = evaluate.evaluate(run, str(tmp_path / "w"), oracle=SpyOracle())
  assert judged and all(j == (48, 48, 24, 24) for j in judged)
  assert result["attributes"] == list(privacy_test.attribute_names)
  assert 0.0 <= result["privacy_cmap"] <= 100.0


def test_real_dataset_options_reach_the_loader():
  c = okvqa.get_config()
  assert experiment.privacy_data_config(c).dataset == "vispr"
  c.data.manual_dir = "/m"
  c.data.num_train = 100
  assert experiment.loader_options(c.data, "train") == dict(
    categories=("four", "seven"), image_size=224, manual_dir="/m", num_examples=100
  )
  assert experiment.loader_options(c.data, "test") == dict(
    categories=("four", "seven"), image_size=224, manual_dir="/m"
  )
  assert experiment.loader_options(c.privacy_data, "train") == dict(
    attributes="paper", image_size=224
  )


def test_the_reference_oracle_refuses_real_data():
  c = okvqa.get_config()
  c.oracle.kind = "reference"
  with pytest.raises(ValueError, match="synthetic benchmark only.*'okvqa'"):
    make_oracle(c)


def test_video_config_reads_hmdb51_clips_and_vispr_images(tmp_path):
  """configs/hmdb51_vispr.py's data sections reach the real loaders: clips for the black box
  (without PA-HMDB51's videos, its test set), VISPR images in PA-HMDB51's five attributes for
  privacy, from one manual directory."""
  from anonymax.configs import hmdb51_vispr, ucf101_vispr
  from anonymax.data import pa_hmdb51
  from tests.data import test_hmdb51, test_pa_hmdb51, test_vispr

  manual = tmp_path / "tfds" / "downloads" / "manual"
  manual.mkdir(parents=True)
  test_hmdb51.write_hmdb51(str(manual))
  test_pa_hmdb51.write_pa_hmdb51(str(manual))
  test_vispr.write_release(manual)
  c = hmdb51_vispr.get_config("model=/models/video-llava,split=2")
  c.data.data_dir = str(tmp_path / "tfds")
  c.data.image_size, c.data.clip_length, c.privacy_data.image_size = 16, 4, 16
  utility_train = experiment.load_split(c, "train")
  privacy_train = experiment.load_split(c, "train", privacy=True)
  privacy_test = experiment.load_split(c, "test", privacy=True)
  assert utility_train.visuals.shape[1:] == (4, 16, 16, 3) and utility_train.is_video
  want = [
    (v, cls)
    for v, cls in test_hmdb51.expected("train", 2)
    if f"{cls}/{test_hmdb51.ALL[v][1]}" not in test_pa_hmdb51.LABELS
  ]
  assert [utility_train.class_names[i] for i in utility_train.labels] == [cls for _, cls in want]
  assert utility_train.queries[0].choices  # multiple choice over the class names
  assert privacy_train.visuals.shape[1:] == (16, 16, 3)
  assert privacy_train.attribute_names == pa_hmdb51.ATTRIBUTES
  assert len(privacy_test) == len(test_vispr.TEST)
  assert ucf101_vispr.get_config().data.dataset == "ucf101"
  with pytest.raises(ValueError, match="split='4'"):
    hmdb51_vispr.get_config("split=4")
