"""The privacy judges' specifications and the suites an evaluation names.

A judge is one attacker of the evaluation protocol (`anonymax.privacy_judge`): an architecture,
its training budget and its seed (`JudgeSpec`). A suite is the judges one evaluation trains on
every row; `config.eval.judge_suite` names one of `JUDGE_SUITES`, and `config.eval.judges` spells
out its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from anonymax import judge_training
from anonymax.models import CLASSIFIER_NAMES, get_model


@dataclasses.dataclass(frozen=True)
class JudgeSpec:
  """One judge of the suite: an architecture, its training budget and its seed.

  Attributes:
    name: the judge's name in results, e.g. "resnet18_s0".
    model: a classifier of `anonymax.models` (`CLASSIFIER_NAMES`).
    model_kwargs: its fields, e.g. {"num_filters": 16, "small_input": True}.
    seed: seeds the initialisation, the batch order and the augmentation.
    steps: training steps.
    learning_rate: peak AdamW learning rate (warmed up, then cosine-decayed to 0).
    batch_size: training batch size (clipped to the training set's size).
    augment: random translations by up to `crop_pad` pixels and horizontal flips
      (`judge_training.augment`); the attributes do not depend on either.
    crop_pad: the translation range in pixels.
    noise_std: per-pixel Gaussian noise added when augmenting (0: none).
    weight_decay: AdamW decoupled weight decay.
    warmup_fraction: the share of `steps` spent warming the learning rate up from 0.
  """

  name: str
  model: str
  model_kwargs: Mapping[str, Any]
  seed: int
  steps: int
  learning_rate: float
  batch_size: int
  augment: bool = True
  crop_pad: int = 4
  noise_std: float = 0.0
  weight_decay: float = 1e-4
  warmup_fraction: float = 0.05

  def __post_init__(self):
    if self.model not in CLASSIFIER_NAMES:
      raise ValueError(
        f"judge {self.name!r}: model must be one of {', '.join(CLASSIFIER_NAMES)}, got "
        f"{self.model!r}"
      )
    # A plain dict whatever mapping came in (a config's ConfigDict, say).
    object.__setattr__(self, "model_kwargs", dict(self.model_kwargs.items()))
    checks = {
      "steps": self.steps >= 1,
      "batch_size": self.batch_size >= 1,
      "learning_rate": self.learning_rate > 0,
      "crop_pad": self.crop_pad >= 0,
      "noise_std": self.noise_std >= 0,
      "weight_decay": self.weight_decay >= 0,
      "warmup_fraction": 0 <= self.warmup_fraction < 1,
    }
    for field, ok in checks.items():
      if not ok:
        raise ValueError(f"judge {self.name!r}: bad {field}={getattr(self, field)!r}")

  def train_config(self, num_classes: int) -> judge_training.TrainConfig:
    """The compiled programs' key: the classifier for `num_classes` attributes and the budget."""
    net = get_model(self.model, num_classes=num_classes, **_hashable(self.model_kwargs))
    return judge_training.TrainConfig(
      net=net,
      steps=int(self.steps),
      batch_size=int(self.batch_size),
      learning_rate=float(self.learning_rate),
      weight_decay=float(self.weight_decay),
      warmup_steps=int(self.warmup_fraction * self.steps),
      crop_pad=int(self.crop_pad) if self.augment else 0,
      flip=bool(self.augment),
      noise_std=float(self.noise_std) if self.augment else 0.0,
    )


def _hashable(kwargs: Mapping[str, Any]) -> dict:
  """Lists (as a JSON config gives them) → tuples, so the module can key the program cache."""

  def freeze(v):
    return tuple(freeze(u) for u in v) if isinstance(v, (list, tuple)) else v

  return {k: freeze(v) for k, v in kwargs.items()}


# The default suite's steps: on raw scenes v2 (4,000 training images), a ResNet-18 judge reaches
# a test cMAP of 76 after 600 steps and 89 after 1,500 (docs/performance.md).
DEFAULT_JUDGE_STEPS = 1500


def default_judges(*, steps_scale: float = 1.0) -> tuple[JudgeSpec, ...]:
  """The default suite, sized for 64-px images, 4,000 training images and a 2-core CPU.

  Two seeds of a ResNet-18 and one ResNet-50, 16 filters wide, each with the ImageNet stem (a
  7×7 convolution at stride 2, then a max-pool): on 64-px scenes v2 it reached a higher cMAP per
  second of training than the small-input stem at stride 2 (89 after 1,500 steps, against 85
  after 1,000 steps in 1.3 times the time). AdamW with warm-up and cosine decay, random
  translations and flips. `steps_scale` multiplies every judge's steps (at least 1 each).
  """
  if not steps_scale > 0:
    raise ValueError(f"steps_scale must be > 0, got {steps_scale!r}")
  steps = max(1, round(DEFAULT_JUDGE_STEPS * steps_scale))
  net = dict(num_filters=16, small_input=False)
  common = dict(steps=steps, learning_rate=2e-3, batch_size=64, augment=True, crop_pad=4)
  return (
    JudgeSpec("resnet18_s0", "resnet18", net, seed=0, **common),
    JudgeSpec("resnet18_s1", "resnet18", net, seed=1, **common),
    JudgeSpec("resnet50_s0", "resnet50", net, seed=0, **common),
  )


def quick_judges(*, steps_scale: float = 1.0) -> tuple[JudgeSpec, ...]:
  """One judge for a first look: the default suite's first ResNet-18 at 600 steps (cMAP 76 on
  raw scenes v2, against 89-94 for the default suite; about a twelfth of its cost)."""
  (first, *_) = default_judges()
  steps = max(1, round(600 * steps_scale))
  return (dataclasses.replace(first, steps=steps),)


# The suites `config.eval.judge_suite` names.
JUDGE_SUITES = {"default": default_judges, "quick": quick_judges}
