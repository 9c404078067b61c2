"""The evaluation protocol's privacy measure: fresh classifiers trained on anonymized visuals.

Privacy leakage is not read off the reviewer f_P used in training (the anonymizer was optimised
against it) but from *fresh* judges: classifiers trained from scratch on the anonymized training
visuals to predict the privacy attributes, scored by their class-wise mAP on the anonymized test
visuals (lower is better privacy). One judge is one attacker; a weak one flatters every
anonymizer, so the measure is a suite of judges (`JudgeSpec`: architectures, seeds, training
budgets, augmentation) and the headline is its strongest member,

    cMAP_max = max_j cMAP_j,   cMAP_j = (1/|C|) Σ_{c ∈ C} AP_c(y_test[:, c], f_j(x_test)[:, c]),

over the attributes C with a test positive (`anonymax.metrics.cmap`), beside cMAP_mean. The floor
is not 0 but the cMAP of a scorer that knows nothing (`chance_cmap`), about the attributes'
positive rate.

An evaluation judges every comparison row (raw data, baselines, ours) with the same suite, so
`judge_rows` compiles each judge's programs once and reuses them for every row, and every row is
trained with the same seeds: the same initialisation, batches and augmentation draws, so two rows
differ only by their pixels. Training itself lives in `anonymax.judge_training`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from anonymax import judge_training, metrics

# The suites live in their own module; these names stay importable from here.
from anonymax.judge_suites import (  # noqa: F401
  DEFAULT_JUDGE_STEPS,
  JUDGE_SUITES,
  JudgeSpec,
  default_judges,
  quick_judges,
)
from anonymax.models import CLASSIFIER_NAMES


def chance_cmap(test_labels, *, draws: int = 1000, seed: int = 0) -> float:
  """The cMAP of a scorer that knows nothing, measured on these labels.

  chance = E_s[cMAP(y, s)],  s_ic ~ U(0, 1) i.i.d.,

  estimated by the mean over `draws` draws. For an attribute with K positives among N examples
  the expected AP of a random ranking is (1/N) Σ_{k=1..K} ... ≈ K/N for large K, but noticeably
  more for rare attributes (one positive among N: E[1/rank] = H_N / N), which is why it is
  measured rather than taken as the positive rate.

  Args:
    test_labels: multi-hot [N, P].
    draws: random scorers to average over (standard error ≈ 0.3 / sqrt(draws · P) for balanced
      attributes).
    seed: seeds the scores.

  Returns:
    The mean cMAP, in [0, 1].
  """
  labels = np.asarray(test_labels)
  if labels.ndim != 2 or not np.isin(labels, (0, 1)).all():
    raise ValueError(f"test_labels must be multi-hot [N, P], got shape {labels.shape}")
  if draws < 1:
    raise ValueError(f"draws must be >= 1, got {draws}")
  rng = np.random.default_rng(seed)
  return float(
    np.mean([metrics.cmap(labels, rng.uniform(size=labels.shape)) for _ in range(draws)])
  )


# --- Inputs --------------------------------------------------------------------------------------


def _check_labels(labels: Any, split: str) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 2:
    raise ValueError(f"{split}_labels must be multi-hot [N, P], got shape {labels.shape}")
  if labels.shape[0] == 0:
    raise ValueError(f"{split}_labels is empty")
  if not np.isin(labels, (0, 1)).all():
    raise ValueError(f"{split}_labels must be multi-hot (0/1)")
  return labels.astype(np.float32)


def _check_visuals(visuals: Any, num: int, split: str, allow_uint8: bool = True) -> np.ndarray:
  """float visuals in [0, 1] (as float32) or uint8 ones in [0, 255] (kept uint8: 4x less memory;
  the programs divide by 255 on the device)."""
  visuals = np.asarray(visuals)
  if visuals.ndim not in (4, 5) or visuals.shape[-1] != 3:
    raise ValueError(
      f"{split}_visuals must be images [N, H, W, 3] or clips [N, T, H, W, 3], got {visuals.shape}"
    )
  if visuals.dtype == np.uint8 and allow_uint8:
    pass
  elif not np.issubdtype(visuals.dtype, np.floating):
    kinds = "float in [0, 1] or uint8" if allow_uint8 else "float in [0, 1]"
    raise ValueError(f"{split}_visuals must be {kinds}, got dtype {visuals.dtype}")
  else:
    visuals = visuals.astype(np.float32, copy=False)
    if visuals.size and not (
      np.isfinite(visuals).all() and 0.0 <= visuals.min() <= visuals.max() <= 1.0
    ):
      raise ValueError(f"{split}_visuals must be finite values in [0, 1]")
  if visuals.shape[0] != num:
    raise ValueError(
      f"{split}_visuals has {visuals.shape[0]} examples but {split}_labels has {num}"
    )
  return visuals


def _check_judges(judges) -> tuple[JudgeSpec, ...]:
  judges = default_judges() if judges is None else tuple(judges)
  if not judges:
    raise ValueError("judges: the suite needs at least one judge")
  names = [j.name for j in judges]
  if len(set(names)) != len(names):
    raise ValueError(f"judges: names must be unique, got {names}")
  return judges


# --- Suite ---------------------------------------------------------------------------------------


def _per_attribute_ap(labels: np.ndarray, scores: np.ndarray) -> list[float]:
  """AP per attribute; NaN where the test labels have no positive (AP undefined)."""
  return [
    metrics.average_precision(labels[:, c], scores[:, c]) if labels[:, c].any() else float("nan")
    for c in range(labels.shape[1])
  ]


def _summary(judges, cmaps, aps, seconds, chance, scores=None) -> dict:
  strongest = max(judges, key=lambda j: cmaps[j.name]).name
  result = {
    "cmap_max": cmaps[strongest],
    "cmap_mean": float(np.mean(list(cmaps.values()))),
    "cmap_min": min(cmaps.values()),
    "strongest": strongest,
    "per_attribute_ap": aps[strongest],
    "judges": dict(cmaps),
    "per_judge_ap": dict(aps),
    "seconds": dict(seconds),
    "chance_cmap": chance,
  }
  if scores is not None:
    result["scores"] = scores
  return result


def _chunks(names: list[str], max_size: int) -> list[list[str]]:
  """Splits names into the fewest chunks of at most max_size, all of one size: the short ones are
  padded with copies of their last name (trained, not reported), so every chunk runs the same
  compiled program."""
  count = -(-len(names) // max_size)
  size = -(-len(names) // count)
  chunks = [names[i : i + size] for i in range(0, len(names), size)]
  return [c + c[-1:] * (size - len(c)) for c in chunks]


def judge_rows(
  rows: Mapping[str, tuple[Any, Any]],
  train_labels,
  test_labels,
  judges: Sequence[JudgeSpec] | None = None,
  *,
  max_rows_per_program: int = 1,
  progress: bool = True,
  eval_batch_size: int = 256,
  keep_scores: bool = False,
  chance_draws: int = 1000,
) -> dict[str, dict]:
  """Judges every row with the whole suite; returns {row name: the suite's result}.

  Each judge's programs compile once per visuals shape and serve every row. With
  `max_rows_per_program` > 1, up to that many rows of one shape are stacked and trained together
  in one program (`jax.vmap` over the row axis); memory grows with it. On a 2-core CPU the loop
  (1, the default) is the faster: vmapping a convolution over per-row kernels turns it into a
  grouped convolution, which ran 2-3x slower than the rows one after another there. A last
  group with fewer rows is padded with copies of its last row so that it reuses the program.

  Args:
    rows: {name: (train_visuals, test_visuals)}: images [N, H, W, 3] or clips [N, T, H, W, 3]
      (classified frame by frame, logits averaged over T), float in [0, 1] or uint8.
    train_labels: multi-hot [N, P], shared by every row.
    test_labels: multi-hot [M, P].
    judges: the suite (`default_judges()` when None).
    max_rows_per_program: rows trained in one program.
    progress: one tqdm bar over all rows and judges.
    eval_batch_size: test examples per predict call.
    keep_scores: also return each judge's test logits [M, P] ("scores": {judge: array}).
    chance_draws: draws of `chance_cmap` (reported as "chance_cmap" in every row).

  Returns:
    {row: dict(cmap_max, cmap_mean, cmap_min, strongest (the judge of cmap_max),
    per_attribute_ap (the strongest judge's, NaN without a test positive), judges {name: cMAP},
    per_judge_ap {name: list}, seconds {name: training and scoring time}, chance_cmap)}.
  """
  judges = _check_judges(judges)
  y_train = _check_labels(train_labels, "train")
  y_test = _check_labels(test_labels, "test")
  if y_train.shape[1] != y_test.shape[1]:
    raise ValueError(
      f"train_labels has {y_train.shape[1]} attributes but test_labels has {y_test.shape[1]}"
    )
  if max_rows_per_program < 1:
    raise ValueError(f"max_rows_per_program must be >= 1, got {max_rows_per_program}")
  if not rows:
    raise ValueError("rows: nothing to judge")
  data = {}
  for name, (train_visuals, test_visuals) in rows.items():
    x_train = _check_visuals(train_visuals, y_train.shape[0], "train")
    x_test = _check_visuals(test_visuals, y_test.shape[0], "test")
    if x_train.shape[1:] != x_test.shape[1:] or x_train.dtype != x_test.dtype:
      raise ValueError(
        f"row {name!r}: train_visuals {x_train.shape[1:]} {x_train.dtype} and test_visuals "
        f"{x_test.shape[1:]} {x_test.dtype} differ per example"
      )
    data[name] = (x_train, x_test)

  # Rows of one per-example shape and dtype can share a program.
  groups: dict[tuple, list[str]] = {}
  for name, (x_train, _) in data.items():
    groups.setdefault((x_train.shape, x_train.dtype.str), []).append(name)
  programs = [c for names in groups.values() for c in _chunks(names, max_rows_per_program)]

  chance = chance_cmap(y_test, draws=chance_draws)
  bar = tqdm(
    total=len(data) * sum(j.steps for j in judges),
    desc="privacy judges",
    disable=not progress,
    leave=False,
  )
  figures = {name: {"cmap": {}, "ap": {}, "seconds": {}, "scores": {}} for name in data}
  for chunk in programs:
    real = list(dict.fromkeys(chunk))  # the padded copies are trained but not reported
    stacked = len(chunk) > 1
    x_train = np.stack([data[n][0] for n in chunk]) if stacked else data[chunk[0]][0]
    x_test = np.stack([data[n][1] for n in chunk]) if stacked else data[chunk[0]][1]
    for judge in judges:
      bar.set_description(f"privacy judges: {', '.join(real)} / {judge.name}")
      start = time.perf_counter()
      logits = judge_training.fit_and_score(
        judge.train_config(y_train.shape[1]),
        judge.seed,
        x_train,
        y_train,
        x_test,
        rows=len(chunk),
        eval_batch_size=eval_batch_size,
        on_step=_progress(bar, len(real)) if progress else None,
      )
      elapsed = (time.perf_counter() - start) / len(real)
      for r, name in enumerate(real):
        row_logits = logits[r] if stacked else logits
        f = figures[name]
        f["ap"][judge.name] = _per_attribute_ap(y_test, row_logits)
        f["cmap"][judge.name] = metrics.cmap(y_test, row_logits)
        f["seconds"][judge.name] = elapsed
        f["scores"][judge.name] = row_logits
  bar.close()
  return {
    name: _summary(
      judges, f["cmap"], f["ap"], f["seconds"], chance, f["scores"] if keep_scores else None
    )
    for name, f in figures.items()
  }


def _progress(bar, rows: int):
  """An `on_step` callback advancing `bar` by `rows` per step and showing the loss."""
  done = [0]

  def on_step(step, loss):
    bar.update((step - done[0]) * rows)
    done[0] = step
    if loss is not None:
      bar.set_postfix(loss=f"{float(np.mean(loss)):.4f}")

  return on_step


def judge_suite(
  train_visuals,
  train_labels,
  test_visuals,
  test_labels,
  judges: Sequence[JudgeSpec] | None = None,
  **kwargs,
) -> dict:
  """Judges one row with the suite: `judge_rows` for a single row (same keywords, same result)."""
  return judge_rows(
    {"row": (train_visuals, test_visuals)}, train_labels, test_labels, judges, **kwargs
  )["row"]


def judge_privacy(
  train_visuals,
  train_labels,
  test_visuals,
  test_labels,
  *,
  model: str = "resnet18",
  steps: int = 2000,
  batch_size: int = 64,
  learning_rate: float = 1e-3,
  seed: int = 0,
  progress: bool = True,
  weight_decay: float = 1e-4,
  eval_batch_size: int = 256,
  model_kwargs: dict | None = None,
) -> dict:
  """One judge without augmentation or warm-up: the single-judge measure the suite replaces.

  cMAP = (1/|C|) Σ_{c ∈ C} AP_c(test_labels[:, c], f(test_visuals)[:, c]), over the classes C
  with a test positive (see `anonymax.metrics.cmap`). Training is the suite's with
  augment=False and warmup_fraction=0: AdamW with the learning rate cosine-decayed from its peak.

  Args:
    train_visuals: float32 [N, H, W, 3] or [N, T, H, W, 3] in [0, 1], already anonymized.
    train_labels: float32 multi-hot [N, P] privacy attributes.
    test_visuals: anonymized test visuals, same layout as the training ones.
    test_labels: float32 multi-hot [M, P].
    model: one of "resnet50", "resnet18", "resnet_tiny".
    steps: training steps (batches).
    batch_size: training batch size (clipped to N).
    learning_rate: peak AdamW learning rate (cosine-decayed to 0 over `steps`).
    seed: seeds the initialisation and the batch order.
    progress: show a tqdm progress bar.
    weight_decay: AdamW decoupled weight decay.
    eval_batch_size: batch size for scoring the test visuals.
    model_kwargs: extra ResNet fields; `small_input` defaults to True for visuals of at
      most 64 px per side.

  Returns:
    dict(cmap=float, per_class_ap=list[float] (NaN for a class without a test positive),
    steps=int).
  """
  if model not in CLASSIFIER_NAMES:
    raise ValueError(f"judge model must be one of {', '.join(CLASSIFIER_NAMES)}, got {model!r}")
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}")
  if batch_size < 1 or eval_batch_size < 1:
    raise ValueError(f"batch sizes must be >= 1, got {batch_size} and {eval_batch_size}")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
  y_train = _check_labels(train_labels, "train")
  y_test = _check_labels(test_labels, "test")
  x_train = _check_visuals(train_visuals, y_train.shape[0], "train", allow_uint8=False)
  x_test = _check_visuals(test_visuals, y_test.shape[0], "test", allow_uint8=False)
  if x_train.shape[1:] != x_test.shape[1:]:
    raise ValueError(
      f"train_visuals {x_train.shape[1:]} and test_visuals {x_test.shape[1:]} differ per example"
    )
  if y_train.shape[1] != y_test.shape[1]:
    raise ValueError(
      f"train_labels has {y_train.shape[1]} attributes but test_labels has {y_test.shape[1]}"
    )
  kwargs = dict(model_kwargs or {})
  kwargs.setdefault("small_input", min(x_train.shape[-3:-1]) <= 64)
  spec = JudgeSpec(
    name=model,
    model=model,
    model_kwargs=kwargs,
    seed=seed,
    steps=steps,
    learning_rate=learning_rate,
    batch_size=batch_size,
    augment=False,
    weight_decay=weight_decay,
    warmup_fraction=0.0,
  )
  bar = tqdm(total=steps, desc=f"privacy judge ({model})", disable=not progress, leave=False)

  def on_step(step, loss):
    bar.update(step - bar.n)
    if loss is not None:
      bar.set_postfix(loss=f"{float(loss):.4f}")

  logits = judge_training.fit_and_score(
    spec.train_config(y_train.shape[1]),
    seed,
    x_train,
    y_train,
    x_test,
    eval_batch_size=eval_batch_size,
    on_step=on_step if progress else None,
  )
  bar.close()
  return {
    "cmap": metrics.cmap(y_test, logits),
    "per_class_ap": _per_attribute_ap(y_test, logits),
    "steps": int(steps),
  }
