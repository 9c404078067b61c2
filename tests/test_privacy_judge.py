"""Tests for the fresh-ResNet privacy judge (the evaluation protocol's privacy measure)."""

from __future__ import annotations

import numpy as np
import pytest

from anonymax.privacy_judge import judge_privacy

# Three attributes, each shown by a bright 6x6 patch at its own place on a dim noisy image.
PATCHES = [(0, 0), (0, 10), (10, 5)]
TRAIN = dict(model="resnet_tiny", steps=80, batch_size=32, learning_rate=3e-3, progress=False)


def _toy(n, rng, visible=True):
  x = rng.uniform(0.0, 0.5, (n, 16, 16, 3)).astype(np.float32)
  y = (rng.uniform(size=(n, len(PATCHES))) < 0.5).astype(np.float32)
  if visible:
    for c, (r, q) in enumerate(PATCHES):
      x[y[:, c] == 1, r : r + 6, q : q + 6, :] = 1.0
  return x, y


def test_visible_attributes_are_found():
  rng = np.random.default_rng(0)
  x_train, y_train = _toy(128, rng)
  x_test, y_test = _toy(128, rng)
  result = judge_privacy(x_train, y_train, x_test, y_test, **TRAIN)
  # Chance cMAP is the prevalence (~0.5); a visible patch is learned in 80 steps.
  assert result["cmap"] > 0.8
  assert result["steps"] == 80
  assert len(result["per_class_ap"]) == 3
  assert result["cmap"] == pytest.approx(np.mean(result["per_class_ap"]))


def test_pure_noise_stays_near_chance():
  rng = np.random.default_rng(1)
  x_train, y_train = _toy(128, rng, visible=False)
  x_test, y_test = _toy(256, rng, visible=False)
  result = judge_privacy(x_train, y_train, x_test, y_test, **TRAIN)
  # With nothing to learn, the AP of every class is its test prevalence up to sampling noise.
  assert abs(result["cmap"] - y_test.mean()) < 0.1


def test_deterministic_given_the_seed_and_clips_work():
  rng = np.random.default_rng(2)
  x, y = _toy(24, rng)
  clips = np.stack([x, x[::-1]], axis=1)  # [24, 2, 16, 16, 3]
  y_test = y.copy()
  y_test[:, 2] = 0  # a class without a test positive: NaN AP, left out of cMAP
  kw = dict(TRAIN, steps=4, batch_size=8)
  first = judge_privacy(clips[:16], y[:16], clips[16:], y_test[16:], seed=3, **kw)
  again = judge_privacy(clips[:16], y[:16], clips[16:], y_test[16:], seed=3, **kw)
  assert first["cmap"] == again["cmap"]
  assert np.isnan(first["per_class_ap"][2])
  assert first["cmap"] == pytest.approx(np.mean(first["per_class_ap"][:2]))


def test_bad_inputs_name_the_field():
  rng = np.random.default_rng(3)
  x, y = _toy(8, rng)
  with pytest.raises(ValueError, match="train_visuals has 8 examples but train_labels has 10"):
    judge_privacy(x, np.concatenate([y, y[:2]]), x, y, **TRAIN)
  with pytest.raises(ValueError, match="test_labels must be multi-hot"):
    judge_privacy(x, y, x, y * 0.5, **TRAIN)
  with pytest.raises(ValueError, match=r"train_visuals must be finite values in \[0, 1\]"):
    judge_privacy(x * 255, y, x, y, **TRAIN)
  with pytest.raises(ValueError, match="test_visuals must be float"):
    judge_privacy(x, y, (x * 255).astype(np.uint8), y, **TRAIN)
  with pytest.raises(ValueError, match="attributes"):
    judge_privacy(x, y, x, y[:, :2], **TRAIN)
  with pytest.raises(ValueError, match="judge model"):
    judge_privacy(x, y, x, y, **dict(TRAIN, model="unet"))
  with pytest.raises(ValueError, match="steps"):
    judge_privacy(x, y, x, y, **dict(TRAIN, steps=0))
