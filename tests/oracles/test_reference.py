"""Tests of the reference black box: the text interface, the three losses, the cache, training."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from anonymax import black_boxes, utility_losses
from anonymax.oracles import reference_model
from anonymax.oracles.base import STATUS_INVALID, STATUS_OK, Oracle, Query
from anonymax.oracles.reference import ReferenceOracle
from anonymax.oracles.reference_model import Examples, ExampleSource, TrainConfig

VOCAB = ("red", "green", "blue", "T-shirt")
PROBS = np.array([0.5, 0.25, 0.125, 0.125])  # what the hand-set model answers, for any visual
PROMPTS = ("What color is the ball?", "What is the person wearing?")
TINY = TrainConfig(steps=2, batch_size=4, features=(4, 8), hidden=8, grid=2)
S = 16


def _hand_set_oracle(loss="nll", clip_length=0):
  """A model whose logits are log(PROBS) whatever it sees: every weight 0, last bias = log p."""
  model = reference_model.make_model(TINY, num_answers=len(VOCAB), num_questions=len(PROMPTS))
  shape = (1, clip_length, S, S, 3) if clip_length else (1, S, S, 3)
  params = jax.tree.map(np.zeros_like, reference_model.init_params(model, shape, seed=0))
  params["logits"]["bias"] = np.log(PROBS).astype(np.float32)
  return ReferenceOracle(
    params,
    vocab=VOCAB,
    prompts=PROMPTS,
    image_size=S,
    clip_length=clip_length,
    config=TINY,
    loss=loss,
  )


def _random_oracle(seed=0, loss="nll"):
  model = reference_model.make_model(TINY, num_answers=len(VOCAB), num_questions=len(PROMPTS))
  params = reference_model.init_params(model, (1, S, S, 3), seed=seed)
  return ReferenceOracle(
    params, vocab=VOCAB, prompts=PROMPTS, image_size=S, config=TINY, loss=loss, max_batch=4
  )


def _images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, S, S, 3), dtype=np.uint8)


def test_is_an_oracle():
  oracle = _hand_set_oracle()
  assert isinstance(oracle, Oracle)
  assert oracle.loss == "nll"
  with pytest.raises(ValueError, match="oracle.loss"):
    _hand_set_oracle(loss="bleu")


def test_nll_is_expected_nll_over_the_answer_distribution():
  oracle = _hand_set_oracle("nll")
  queries = [
    Query(PROMPTS[0], ("red",) * 6 + ("green",) * 4),  # VQA: ten answers
    Query(PROMPTS[1], ("T-shirt",)),  # one class name
    Query(PROMPTS[0], ("purple",) * 10),  # outside the vocabulary: the floor
    Query(PROMPTS[0], ("Red.",) * 5 + ("  GREEN",) * 5),  # matched after normalisation
  ]
  out = oracle.query(_images(4), queries)
  np.testing.assert_array_equal(out.status, [STATUS_OK] * 4)
  expected = [
    -(0.6 * math.log(0.5) + 0.4 * math.log(0.25)),
    -math.log(0.125),
    math.log(1e6),
    -(0.5 * math.log(0.5) + 0.5 * math.log(0.25)),
  ]
  np.testing.assert_allclose(out.losses, expected, rtol=1e-5)
  assert out.answers == ["red"] * 4
  assert out.losses.dtype == np.float32 and out.status.dtype == np.int32


def test_choice_is_nll_restricted_to_the_choices():
  oracle = _hand_set_oracle("choice")
  queries = [
    Query(PROMPTS[0], ("green",), choices=("green", "blue")),  # .25 / .375
    Query(PROMPTS[0], ("blue",), choices=("red", "green", "blue", "T-shirt")),  # .125 / 1
    Query(PROMPTS[0], ("red",), choices=("red", "purple")),  # purple at the floor
    # The majority among the choices is correct ("yellow" is no option): green, .25 / .375.
    Query(PROMPTS[0], ("blue", "yellow", "green", "yellow", "green"), choices=("green", "blue")),
    Query(PROMPTS[0], ("red",), choices=("green", "blue")),  # answer not a choice
    Query(PROMPTS[0], ("red",)),  # no choices at all
  ]
  out = oracle.query(_images(6), queries)
  np.testing.assert_array_equal(out.status, [STATUS_OK] * 4 + [STATUS_INVALID] * 2)
  np.testing.assert_allclose(
    out.losses,
    [-math.log(2 / 3), -math.log(0.125), math.log(1 + 1e-6 / 0.5), -math.log(2 / 3), 0.0, 0.0],
    rtol=1e-5,
  )


def test_vqa_is_one_minus_vqa_accuracy_of_the_argmax_answer():
  oracle = _hand_set_oracle("vqa")  # always answers "red"
  queries = [
    Query(PROMPTS[0], ("red",) * 10),  # accuracy 1
    Query(PROMPTS[0], ("blue",) * 10),  # accuracy 0
    # Leave-one-out: the 2 subsets without a "red" have 1 match (1/3), the 8 others 2 (2/3).
    Query(PROMPTS[0], ("red",) * 2 + ("green",) * 8),
  ]
  out = oracle.query(_images(3), queries)
  np.testing.assert_array_equal(out.status, [STATUS_OK] * 3)
  np.testing.assert_allclose(out.losses, [0.0, 1.0, 1 - (2 / 3 * 8 + 1 / 3 * 2) / 10], atol=1e-6)


def test_unknown_prompt_is_invalid_and_the_others_are_still_scored():
  oracle = _hand_set_oracle("nll")
  queries = [
    Query("How old is the person?", ("red",)),
    Query("Please answer in one word. What COLOR is the ball??", ("red",)),
    Query(PROMPTS[1], ("red",)),
  ]
  out = oracle.query(_images(3), queries)
  np.testing.assert_array_equal(out.status, [STATUS_INVALID, STATUS_OK, STATUS_OK])
  np.testing.assert_allclose(out.losses, [0.0, math.log(2), math.log(2)], rtol=1e-5)
  assert out.answers == ["", "red", "red"]
  assert oracle.stats.calls == 3 and oracle.stats.failures == 1


@pytest.mark.parametrize(
  "visuals",
  [
    _images(2).astype(np.float32) / 255,  # float: not what an upload carries
    _images(2).astype(np.int32),
    np.zeros((2, S + 1, S, 3), np.uint8),  # wrong size
    np.zeros((2, S, S, 4), np.uint8),  # wrong channels
    np.zeros((3, S, S, 3), np.uint8),  # three visuals for two queries
    np.zeros((2, 3, S, S, 3), np.uint8),  # a clip to an image oracle
    [[1, 2], [3, 4]],  # not an array
  ],
)
def test_bad_visuals_make_every_sample_invalid_without_raising(visuals):
  oracle = _hand_set_oracle("nll")
  out = oracle.query(visuals, [Query(PROMPTS[0], ("red",))] * 2)
  np.testing.assert_array_equal(out.status, [STATUS_INVALID] * 2)
  np.testing.assert_array_equal(out.losses, [0.0, 0.0])
  assert out.answers == ["", ""]
  assert oracle.stats.calls == 0 and oracle.stats.failures == 2
  with pytest.raises(ValueError, match="visuals"):
    oracle.answer(visuals, [PROMPTS[0]] * 2)


def test_clip_oracle_takes_clips_of_its_length():
  oracle = _hand_set_oracle("nll", clip_length=3)
  clips = np.zeros((2, 3, S, S, 3), np.uint8)
  out = oracle.query(clips, [Query(PROMPTS[0], ("green",))] * 2)
  np.testing.assert_array_equal(out.status, [STATUS_OK] * 2)
  np.testing.assert_allclose(out.losses, [math.log(4)] * 2, rtol=1e-5)
  out = oracle.query(np.zeros((2, 4, S, S, 3), np.uint8), [Query(PROMPTS[0], ("green",))] * 2)
  np.testing.assert_array_equal(out.status, [STATUS_INVALID] * 2)


def test_answer_gives_top_k_with_log_probabilities():
  oracle = _hand_set_oracle()
  top = oracle.answer(_images(2), [PROMPTS[1], "Who won the match?"], top_k=3)
  assert [a for a, _ in top[0]] == ["red", "green", "blue"]
  np.testing.assert_allclose([lp for _, lp in top[0]], np.log(PROBS[:3]), rtol=1e-5)
  assert top[1] == []  # an unknown question gets no answer
  with pytest.raises(ValueError, match="top_k"):
    oracle.answer(_images(1), [PROMPTS[0]], top_k=0)


def test_answers_do_not_depend_on_the_batch():
  oracle = _random_oracle()  # max_batch=4: 7 samples are one full chunk and one padded chunk
  images = _images(7, seed=1)
  prompts = [PROMPTS[i % 2] for i in range(7)]
  together = oracle.log_probs(images, np.array([i % 2 for i in range(7)], np.int32))
  for i in range(7):
    alone = oracle.answer(images[i : i + 1], [prompts[i]], top_k=len(VOCAB))[0]
    best = int(np.argmax(together[i]))
    assert alone[0][0] == VOCAB[best]
    np.testing.assert_allclose(alone[0][1], together[i, best], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.exp(together).sum(axis=1), 1.0, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
  oracle = _random_oracle(seed=3)
  path = str(tmp_path / "sub" / "oracle.npz")
  oracle.save(path)
  assert os.listdir(tmp_path / "sub") == ["oracle.npz"]  # no temporary file left behind
  loaded = ReferenceOracle.load(path, loss="vqa")
  assert loaded.vocab == VOCAB and loaded.loss == "vqa" and loaded.config == TINY
  images = _images(3, seed=4)
  a = oracle.answer(images, [PROMPTS[0]] * 3, top_k=4)
  b = loaded.answer(images, [PROMPTS[0]] * 3, top_k=4)
  assert a == b
  (tmp_path / "broken.npz").write_bytes(b"not a zip file")
  with pytest.raises(ValueError, match="broken.npz"):
    ReferenceOracle.load(str(tmp_path / "broken.npz"))


def test_loss_helpers_by_hand():
  logp = np.log(np.array([0.5, 0.25, 0.25]))
  index = {"a": 0, "b": 1, "c": 2}
  w = reference_model.answer_weights(["a", "A", "b", "zzz"], index)
  assert w == {0: 0.5, 1: 0.25, -1: 0.25}
  floor = utility_losses.LOG_PROB_FLOOR
  expected = -(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 0.25 * floor)
  lp = utility_losses.floored_log_probs(logp, w.keys())
  assert utility_losses.expected_nll(lp, list(w.values())) == pytest.approx(expected)
  lp = utility_losses.floored_log_probs(logp, [1, 2])
  assert utility_losses.floored_choice_nll(lp, 0) == pytest.approx(math.log(2))
  assert reference_model.normalize_text("  What's   THE ball?! ") == "what s the ball"


def _toy_data(n=64, seed=0):
  """Images whose answer is the colour of a square (a task a tiny network learns in steps)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n)
  images = np.full((n, S, S, 3), 40, np.uint8)
  for i, lab in enumerate(labels):
    r, c = rng.integers(0, S - 6, 2)
    images[i, r : r + 6, c : c + 6, lab] = 255
  targets = np.eye(len(VOCAB), dtype=np.float32)[labels]
  return images, labels, targets


def test_training_is_deterministic_and_learns():
  images, labels, targets = _toy_data()
  config = TrainConfig(
    steps=60, batch_size=16, learning_rate=1e-2, features=(8, 8), hidden=16, grid=2
  )
  ids = np.arange(len(images))
  qids = np.zeros(len(images), np.int32)
  p1, info = reference_model.train(images, ids, qids, targets, num_questions=1, config=config)
  p2, _ = reference_model.train(images, ids, qids, targets, num_questions=1, config=config)
  jax.tree.map(np.testing.assert_array_equal, p1, p2)
  other_seed = dataclasses.replace(config, seed=1)
  p3, _ = reference_model.train(images, ids, qids, targets, num_questions=1, config=other_seed)
  assert not np.array_equal(p1["logits"]["kernel"], p3["logits"]["kernel"])
  # It learned: the loss fell far below log(4) (uniform) and held-out squares are recognised.
  assert info["final_loss"] < 0.5
  oracle = ReferenceOracle(p1, vocab=VOCAB, prompts=PROMPTS[:1], image_size=S, config=config)
  test_images, test_labels, _ = _toy_data(32, seed=1)
  out = oracle.query(test_images, [Query(PROMPTS[0], (VOCAB[k],)) for k in test_labels])
  assert np.mean([a == VOCAB[k] for a, k in zip(out.answers, test_labels, strict=True)]) > 0.8


def test_train_rejects_bad_inputs():
  images, _, targets = _toy_data(8)
  with pytest.raises(ValueError, match="uint8"):
    reference_model.train(
      images.astype(np.float32), np.arange(8), np.zeros(8), targets, num_questions=1, config=TINY
    )
  with pytest.raises(ValueError, match="lengths"):
    reference_model.train(images, np.arange(7), np.zeros(8), targets, num_questions=1, config=TINY)
  with pytest.raises(ValueError, match="visual_ids"):
    reference_model.train(
      images, np.arange(8) + 1, np.zeros(8), targets, num_questions=1, config=TINY
    )
  with pytest.raises(ValueError, match="TrainConfig.steps"):
    TrainConfig(steps=0)


# --- Trained on the synthetic benchmark ------------------------------------------------------------

SMALL = dict(image_size=32, num_train=2048, steps=500, batch_size=64, num_test=256, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A small reference oracle trained on raw 32×32 synthetic images (a few seconds)."""
  cache_dir = str(tmp_path_factory.mktemp("reference_cache"))
  return black_boxes.reference_oracle(cache_dir=cache_dir, loss="nll", **SMALL), cache_dir


def _benchmark_test_split(n, image_size=32):
  """The benchmark's own raw test images with their questions (never seen in training)."""
  from anonymax.data import synthetic

  data = synthetic.generate(n, seed=synthetic.TEST_SEED_OFFSET, image_size=image_size)
  queries = [
    Query(str(q), tuple(str(a) for a in row), synthetic.CHOICES[str(t)])
    for q, row, t in zip(data["question"], data["answers"], data["question_type"], strict=True)
  ]
  return data["image"], queries


def test_trained_oracle_is_accurate_on_raw_test_images(trained):
  oracle, _ = trained
  assert oracle.name.startswith("reference-synthetic-")
  assert oracle.metadata["test_top1"] > 0.75
  assert oracle.metadata["test_top1_action"] > 0.9
  images, queries = _benchmark_test_split(128)
  oracle.loss = "vqa"
  out = oracle.query(images, queries)
  assert np.all(out.status == STATUS_OK)
  assert 1.0 - out.losses.mean() > 0.75  # VQA accuracy on images it never saw


def test_strong_blur_costs_utility(trained):
  """The tension the benchmark rests on: destroying detail must hurt every utility loss."""
  oracle, _ = trained
  images, queries = _benchmark_test_split(128)
  # 8×8 box blur: average over blocks, then repeat back to 32×32.
  blocks = images.reshape(128, 4, 8, 4, 8, 3).astype(np.float32).mean(axis=(2, 4))
  blurred = np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2).round().astype(np.uint8)
  for loss, margin in (("nll", 0.5), ("choice", 0.5), ("vqa", 0.2)):
    oracle.loss = loss
    raw, blur = oracle.query(images, queries), oracle.query(blurred, queries)
    assert np.all(raw.status == STATUS_OK) and np.all(blur.status == STATUS_OK)
    assert blur.losses.mean() > raw.losses.mean() + margin, loss


def test_second_construction_loads_from_the_cache(trained, monkeypatch):
  oracle, cache_dir = trained
  files = sorted(os.listdir(cache_dir))
  assert len(files) == 1 and files[0].endswith(".npz")

  def no_training(*args, **kwargs):
    raise AssertionError("trained again although the cache holds this oracle")

  monkeypatch.setattr(reference_model, "fit", no_training)
  again = black_boxes.reference_oracle(cache_dir=cache_dir, loss="choice", **SMALL)
  assert again.name == oracle.name and again.loss == "choice"
  assert again.metadata == oracle.metadata
  images, queries = _benchmark_test_split(8)
  prompts = [q.prompt for q in queries]
  assert again.answer(images, prompts, top_k=3) == oracle.answer(images, prompts, top_k=3)
  assert sorted(os.listdir(cache_dir)) == files
  # Other hyperparameters are another oracle (and would train).
  with pytest.raises(AssertionError, match="trained again"):
    black_boxes.reference_oracle(cache_dir=cache_dir, **{**SMALL, "steps": 499})


def test_same_seed_trains_the_same_oracle(tmp_path):
  kw = dict(image_size=32, num_train=64, steps=3, batch_size=8, num_test=0, progress=False)
  a = black_boxes.reference_oracle(cache_dir=str(tmp_path / "a"), **kw)
  # A damaged cache file is trained again (and replaced), not fatal.
  (path,) = (tmp_path / "a").iterdir()
  path.write_bytes(path.read_bytes()[:100])
  b = black_boxes.reference_oracle(cache_dir=str(tmp_path / "a"), **kw)
  assert ReferenceOracle.load(str(path)).name == b.name
  c = black_boxes.reference_oracle(cache_dir=str(tmp_path / "c"), seed=1, **kw)
  assert a.name == b.name != c.name
  flat_a, flat_b = (
    reference_model.flatten_params(a.params),
    reference_model.flatten_params(b.params),
  )
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_array_equal(flat_a[k], flat_b[k])
  flat_c = reference_model.flatten_params(c.params)
  assert any(not np.array_equal(flat_a[k], flat_c[k]) for k in flat_a)


def test_clip_oracle_recognises_actions(tmp_path):
  from anonymax.data import synthetic

  oracle = black_boxes.reference_oracle(
    cache_dir=str(tmp_path),
    image_size=32,
    clip_length=4,
    loss="choice",
    num_train=256,
    steps=100,
    batch_size=8,
    num_test=0,
    progress=False,
  )
  data = synthetic.generate(64, seed=synthetic.TEST_SEED_OFFSET, image_size=32, clip_length=4)
  truth = [synthetic.ACTIONS[a] for a in data["action"]]
  queries = [Query(synthetic.ACTION_PROMPT, (t,), synthetic.ACTIONS) for t in truth]
  out = oracle.query(data["clip"], queries)
  assert np.all(out.status == STATUS_OK)
  top1 = np.mean([a == t for a, t in zip(out.answers, truth, strict=True)])
  assert top1 > 0.5  # chance is 1/7
  # A still image is not a clip: refused, not guessed.
  out = oracle.query(data["clip"][:, 0], queries)
  assert np.all(out.status == STATUS_INVALID)


def test_load_or_train_rejects_bad_arguments(tmp_path):
  source = _toy_source()
  with pytest.raises(ValueError, match="oracle.loss"):
    ReferenceOracle.load_or_train(source, cache_dir=str(tmp_path), image_size=S, loss="bleu")
  with pytest.raises(ValueError, match="num_train"):
    ReferenceOracle.load_or_train(source, cache_dir=str(tmp_path), image_size=S, num_train=0)
  # Examples of another size than the oracle is built for: refused before any training.
  with pytest.raises(ValueError, match="image_size=32"):
    ReferenceOracle.load_or_train(source, cache_dir=str(tmp_path), image_size=32, progress=False)
  with pytest.raises(ValueError, match="clip_length=3"):
    ReferenceOracle.load_or_train(source, cache_dir=str(tmp_path), image_size=S, clip_length=3)
  assert os.listdir(tmp_path) == []


# --- Examples handed over by the builder -----------------------------------------------------------

TOY_VOCAB = ("blue", "green", "red")
TOY_KW = dict(image_size=S, num_train=48, steps=3, batch_size=8, num_test=8, progress=False)


def _toy_source(vocabulary=TOY_VOCAB, labels=(), brightness=40):
  """Squares of one colour on grey: "red"/"green"/"blue", plus a "Crimson" annotator for red."""

  def generate(num, seed):
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 3, num)
    images = np.full((num, S, S, 3), brightness, np.uint8)
    for i, c in enumerate(colours):
      images[i, 4:10, 4:10, c] = 255
    names = ("red", "green", "blue")
    answers = [(names[c],) * 9 + (("Crimson",) if c == 0 else (names[c],)) for c in colours]
    return Examples(
      images, np.arange(num, dtype=np.int32), [PROMPTS[0]] * num, answers, ["color"] * num
    )

  return ExampleSource(generate=generate, vocabulary=tuple(vocabulary), labels=labels)


def test_the_builder_s_examples_vocabulary_and_fingerprint_decide_the_oracle(tmp_path):
  oracle = ReferenceOracle.load_or_train(_toy_source(), cache_dir=str(tmp_path), **TOY_KW)
  # The source's vocabulary in its order gives the answer ids; answers beyond it follow.
  assert oracle.vocab == ("blue", "green", "red", "Crimson")
  assert oracle.prompts == ("what color is the ball",)
  assert 0.0 <= oracle.metadata["test_top1"] <= 1.0 and "test_top1_color" in oracle.metadata
  again = ReferenceOracle.load_or_train(_toy_source(), cache_dir=str(tmp_path), **TOY_KW)
  assert again.name == oracle.name and len(os.listdir(tmp_path)) == 1  # loaded from the cache

  def fingerprint(source):
    return reference_model.data_fingerprint(source, image_size=S, clip_length=0)

  # Whatever defines the data changes the fingerprint, hence the cache key (a new training).
  base = fingerprint(_toy_source())
  assert base == fingerprint(_toy_source())  # deterministic
  assert fingerprint(_toy_source(vocabulary=("red", "green", "blue"))) != base
  assert fingerprint(_toy_source(labels=(("a", "b"),))) != base
  assert fingerprint(_toy_source(brightness=41)) != base
  other = ReferenceOracle.load_or_train(
    _toy_source(brightness=41), cache_dir=str(tmp_path), **TOY_KW
  )
  assert other.name != oracle.name and len(os.listdir(tmp_path)) == 2


def test_the_synthetic_source_is_the_benchmark_generator():
  from anonymax.data import synthetic

  source = black_boxes.synthetic_examples(32)
  assert source.vocabulary == tuple(synthetic.ANSWER_VOCAB)
  assert source.labels == (tuple(synthetic.ACTIONS),)
  ex = source.generate(3, 7)
  data = synthetic.generate(3, seed=7, image_size=32)
  np.testing.assert_array_equal(ex.visuals, data["image"])
  assert ex.prompts == [str(q) for q in data["question"]]
  assert ex.answers == [tuple(str(a) for a in row) for row in data["answers"]]
  assert ex.visual_ids.tolist() == [0, 1, 2]
  clips = black_boxes.synthetic_examples(32, clip_length=4).generate(2, 0)
  assert clips.visuals.shape == (2, 4, 32, 32, 3)


ORACLES_ALONE = r"""
import sys
import numpy as np
from anonymax.oracles import bridge, cache, openai, reference, server
from anonymax.oracles.reference_model import Examples, ExampleSource

def generate(num, seed):
  images = np.random.default_rng(seed).integers(0, 256, (num, 16, 16, 3), dtype=np.uint8)
  return Examples(images, np.arange(num, dtype=np.int32), ["Which?"] * num, [("a",)] * num,
                  ["t"] * num)

oracle = reference.ReferenceOracle.load_or_train(
  ExampleSource(generate, ("a", "b")), cache_dir=sys.argv[1], image_size=16, num_train=8,
  steps=2, batch_size=4, num_test=4, progress=False)
assert oracle.vocab == ("a", "b"), oracle.vocab
loaded = sorted(m for m in sys.modules if m.startswith("anonymax.data"))
print("data modules:", loaded)
"""


def test_oracles_train_and_serve_without_any_data_module(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu")
  out = subprocess.run(
    [sys.executable, "-c", ORACLES_ALONE, str(tmp_path)],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "data modules: []" in out.stdout
