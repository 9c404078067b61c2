"""Tests of the TFDS builder (built and read without TensorFlow), `load_split` and `batch_indices`."""

from __future__ import annotations

import functools
import pathlib
import sys
import types

import numpy as np
import pytest

from anonymax.data import pipeline, synthetic
from anonymax.types import Query

# Scenes v1 (the builder's default config; v2 has its own tests in test_scenes_v2.py).
SMALL = {"scenes": "v1", "image_size": 32, "num_train": 6, "num_test": 4, "seed": 3}


def test_tfds_round_trip_images_equals_generate_without_tensorflow(data_dir):
  train = pipeline.load_split("synthetic", "train", data_dir=data_dir, **SMALL)
  test = pipeline.load_split("synthetic", "test", data_dir=data_dir, **SMALL)
  assert "tensorflow" not in sys.modules
  files = list((pathlib.Path(data_dir) / "anonymax_synthetic").rglob("*array_record*"))
  assert files, "the builder must write array_record files"
  for split, seed, n in ((train, 3, 6), (test, 3 + synthetic.TEST_SEED_OFFSET, 4)):
    ref = synthetic.generate(n, seed=seed, image_size=32)
    assert len(split) == n and not split.is_video
    np.testing.assert_array_equal(split.visuals, ref["image"])
    np.testing.assert_array_equal(split.privacy, ref["privacy"])
    np.testing.assert_array_equal(split.labels, ref["action"])
    assert split.labels.dtype == np.int32 and split.privacy.dtype == np.float32
    assert [q.prompt for q in split.queries] == list(ref["question"])
    assert [q.answers for q in split.queries] == [tuple(a) for a in ref["answers"]]
    for q, qtype in zip(split.queries, ref["question_type"]):
      assert q.choices == synthetic.CHOICES[qtype]
    assert split.attribute_names == synthetic.PRIVACY_ATTRIBUTES
    assert split.class_names == synthetic.ACTIONS
  # The train and test splits are different draws.
  assert not np.array_equal(train.visuals[:4], test.visuals)


def test_tfds_round_trip_clips(data_dir):
  split = pipeline.load_split(
    "synthetic",
    "train",
    data_dir=data_dir,
    scenes="v1",
    image_size=32,
    clip_length=3,
    num_examples=4,
    seed=0,
  )
  ref = synthetic.generate(4, seed=0, image_size=32, clip_length=3)
  assert split.is_video and split.visuals.shape == (4, 3, 32, 32, 3)
  np.testing.assert_array_equal(split.visuals, ref["clip"])
  for q, action in zip(split.queries, ref["action"]):
    assert q == Query(synthetic.ACTION_PROMPT, (synthetic.ACTIONS[action],), synthetic.ACTIONS)
  assert "tensorflow" not in sys.modules


def test_sliced_split_and_second_load_reuses_files(data_dir):
  head = pipeline.load_split("synthetic", "train[:2]", data_dir=data_dir, **SMALL)
  full = pipeline.load_split("synthetic", "train", data_dir=data_dir, **SMALL)
  np.testing.assert_array_equal(head.visuals, full.visuals[:2])
  sub = full.subset(np.array([4, 0]))
  np.testing.assert_array_equal(sub.visuals, full.visuals[[4, 0]])
  assert sub.queries == [full.queries[4], full.queries[0]]


def test_num_examples_builds_the_requested_split_alone(data_dir):
  kw = {"scenes": "v1", "image_size": 32, "seed": 3}
  train = pipeline.load_split("synthetic", "train", data_dir=data_dir, num_examples=5, **kw)
  test = pipeline.load_split("synthetic", "test", data_dir=data_dir, num_examples=3, **kw)
  root = pathlib.Path(data_dir) / "anonymax_synthetic"
  assert (root / "images_s32_n5-0_seed3").is_dir() and (root / "images_s32_n0-3_seed3").is_dir()
  # A split's content does not depend on the other split's size (nor on its own beyond a prefix):
  # the same examples as the 6/4 config of the round-trip test.
  both_train = pipeline.load_split("synthetic", "train", data_dir=data_dir, **SMALL)
  both_test = pipeline.load_split("synthetic", "test", data_dir=data_dir, **SMALL)
  np.testing.assert_array_equal(train.visuals, both_train.visuals[:5])
  np.testing.assert_array_equal(test.visuals, both_test.visuals[:3])
  with pytest.raises(ValueError, match="num_test=0"):
    pipeline.load_split("synthetic", "test", data_dir=data_dir, num_train=2, num_test=0, **kw)
  with pytest.raises(ValueError, match="num_examples"):
    pipeline.load_split("synthetic", "test", data_dir=data_dir, num_examples=2, num_test=2, **kw)


def test_builder_as_data_source_directly(data_dir):
  cfg = synthetic.make_config(image_size=32, num_train=2, num_test=2, seed=9)
  assert cfg.name == "images_s32_n2-2_seed9"
  builder = synthetic.AnonymaxSynthetic(config=cfg, data_dir=data_dir)
  builder.download_and_prepare()
  source = builder.as_data_source(split="test")
  ref = synthetic.generate(2, seed=9 + synthetic.TEST_SEED_OFFSET, image_size=32)
  np.testing.assert_array_equal(source[1]["image"], ref["image"][1])
  assert "tensorflow" not in sys.modules


def test_registered_configs_are_reused():
  # TFDS refuses an equal-but-distinct config of a registered name: make_config returns the same one.
  assert synthetic.make_config() is synthetic.AnonymaxSynthetic.BUILDER_CONFIGS[0]
  clip_cfg = synthetic.AnonymaxSynthetic.BUILDER_CONFIGS[1]
  assert clip_cfg.clip_length == 8 and clip_cfg.name.startswith("clips8_s64")


@pytest.mark.parametrize(
  "dataset, split, kwargs, field",
  [
    ("nonexistent_set", "train", {}, "dataset"),
    ("Bad Name!", "train", {}, "dataset"),
    ("synthetic", "val", {}, "split"),
    ("synthetic", "train[", {}, "split"),
    ("synthetic", "train", {"image_size": 8}, "image_size"),
    ("synthetic", "train", {"clip_length": -2}, "clip_length"),
    ("synthetic", "train", {"num_examples": -5}, "num_examples"),
    ("synthetic", "train", {"num_train": -5}, "num_train"),
    ("synthetic", "test", {"num_test": 1.5}, "num_test"),
    ("synthetic", "train", {"seed": -1}, "seed"),
    ("synthetic", "train", {"colour": 1}, "colour"),
  ],
)
def test_load_split_errors_name_the_field(tmp_path, dataset, split, kwargs, field):
  with pytest.raises(ValueError, match=field):
    pipeline.load_split(dataset, split, data_dir=str(tmp_path), **kwargs)
  assert not (tmp_path / "anonymax_synthetic").exists()  # nothing built for a bad request


def _assert_splits_equal(a, b):
  np.testing.assert_array_equal(a.visuals, b.visuals)
  np.testing.assert_array_equal(a.privacy, b.privacy)
  np.testing.assert_array_equal(a.labels, b.labels)
  assert a.queries == b.queries
  assert (a.attribute_names, a.class_names) == (b.attribute_names, b.class_names)


@pytest.mark.parametrize("clip_length", [0, 2])
def test_synthetic_loads_like_any_dataset_through_its_module(data_dir, monkeypatch, clip_length):
  kw = {"scenes": "v1", "image_size": 32, "clip_length": clip_length, "num_examples": 3, "seed": 5}
  calls = []
  real = synthetic.load_split

  @functools.wraps(real)
  def spy(split, **kwargs):
    calls.append((split, kwargs))
    return real(split, **kwargs)

  # pipeline.load_split("synthetic", ...) must be anonymax.data.synthetic.load_split(...).
  monkeypatch.setattr(synthetic, "load_split", spy)
  via_pipeline = pipeline.load_split("synthetic", "train", data_dir=data_dir, **kw)
  assert calls == [("train", {"data_dir": data_dir, **kw})]
  monkeypatch.undo()
  direct = synthetic.load_split("train", data_dir=data_dir, **kw)
  assert len(direct) == 3 and direct.is_video == bool(clip_length)
  _assert_splits_equal(via_pipeline, direct)
  ref = synthetic.generate(3, seed=5, image_size=32, clip_length=clip_length)
  np.testing.assert_array_equal(direct.visuals, ref["clip" if clip_length else "image"])


def test_pipeline_dispatches_any_dataset_module_the_same_way(monkeypatch):
  # A dataset module pipeline has never heard of: found by name, options checked by its signature.
  seen = []

  def load_split(split, *, data_dir=None, size=2):
    seen.append((split, data_dir, size))
    return synthetic.load_split  # a sentinel: pipeline must return whatever the module returns

  toy = types.ModuleType("anonymax.data.toy_set")
  toy.load_split = load_split
  monkeypatch.setitem(sys.modules, "anonymax.data.toy_set", toy)
  assert pipeline.load_split("toy_set", "test[:1]", size=5) is synthetic.load_split
  assert seen == [("test[:1]", None, 5)]
  with pytest.raises(ValueError) as e:
    pipeline.load_split("toy_set", "test", colour=1)
  assert str(e.value) == "load_split('toy_set'): unknown option(s) ['colour']; known: ('size',)"
  with pytest.raises(ValueError, match="split='val'"):
    pipeline.load_split("toy_set", "val")
  assert len(seen) == 1  # a bad request never reaches the dataset


@pytest.mark.parametrize(
  "dataset", ["synthetic", "okvqa", "vispr", "ucf101", "hmdb51", "pa_hmdb51"]
)
def test_unknown_option_is_one_line_naming_it(tmp_path, dataset):
  with pytest.raises(ValueError) as e:
    pipeline.load_split(dataset, "test", data_dir=str(tmp_path), colour=1, num_examples=2)
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"load_split({dataset!r}): unknown option(s) ['colour']; known: (")
  assert "'num_examples'" in message.split("known:")[1]  # the dataset's real options are listed
  assert not any(tmp_path.iterdir())  # nothing built for a bad request


def test_synthetic_load_split_checks_its_own_arguments(tmp_path):
  with pytest.raises(ValueError, match="split='val'"):
    synthetic.load_split("val", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="num_examples"):
    synthetic.load_split("train", data_dir=str(tmp_path), num_examples=2, num_train=2)
  with pytest.raises(ValueError, match="image_size"):
    synthetic.load_split("train", data_dir=str(tmp_path), image_size=8)
  assert not any(tmp_path.iterdir())


def test_split_validates_its_fields():
  good = {
    "visuals": np.zeros((2, 8, 8, 3), np.uint8),
    "privacy": np.zeros((2, 7), np.float32),
    "queries": [Query("q", ("a",))] * 2,
    "labels": np.zeros(2, np.int32),
    "attribute_names": synthetic.PRIVACY_ATTRIBUTES,
    "class_names": synthetic.ACTIONS,
  }
  assert len(pipeline.Split(**good)) == 2
  with pytest.raises(ValueError, match="visuals"):
    pipeline.Split(**{**good, "visuals": np.zeros((2, 8, 8, 3), np.float32)})
  with pytest.raises(ValueError, match="privacy"):
    pipeline.Split(**{**good, "privacy": np.zeros((2, 6), np.float32)})
  with pytest.raises(ValueError, match="queries"):
    pipeline.Split(**{**good, "queries": [Query("q", ("a",))]})


def test_batch_indices_deterministic_and_cover_each_epoch():
  n, b = 10, 4
  batches = [pipeline.batch_indices(k, num_examples=n, batch_size=b, seed=1) for k in range(5)]
  assert all(x.dtype == np.int32 and x.shape == (b,) for x in batches)
  stream = np.concatenate(batches)  # 20 positions = exactly two epochs
  assert sorted(stream[:n]) == list(range(n))
  assert sorted(stream[n:]) == list(range(n))
  assert not np.array_equal(stream[:n], stream[n:])  # a fresh permutation per epoch
  # A resumed run (fresh call, any order) sees the same batches.
  again = pipeline.batch_indices(3, num_examples=n, batch_size=b, seed=1)
  np.testing.assert_array_equal(again, batches[3])
  other = [pipeline.batch_indices(k, num_examples=n, batch_size=b, seed=2) for k in range(3)]
  assert not np.array_equal(np.concatenate(other), stream[:12])


def test_batch_indices_batch_larger_than_dataset():
  idx = pipeline.batch_indices(0, num_examples=3, batch_size=7, seed=0)
  # Positions 0..6 span epochs 0, 1 and the first position of epoch 2.
  assert sorted(idx[:3]) == [0, 1, 2] and sorted(idx[3:6]) == [0, 1, 2]
  assert 0 <= idx[6] < 3


@pytest.mark.parametrize(
  "kwargs, field",
  [
    ({"step": -1}, "step"),
    ({"num_examples": 0}, "num_examples"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": -3}, "seed"),
    ({"batch_size": 2.5}, "batch_size"),
  ],
)
def test_batch_indices_errors(kwargs, field):
  args = {"step": 0, "num_examples": 10, "batch_size": 2, "seed": 0, **kwargs}
  step = args.pop("step")
  with pytest.raises(ValueError, match=field):
    pipeline.batch_indices(step, **args)
