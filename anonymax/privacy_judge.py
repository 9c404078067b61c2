"""The evaluation protocol's privacy measure: a fresh ResNet trained on anonymized visuals.

Following Wu et al. (2020) and the paper's evaluation protocol, privacy leakage is
not read off the reviewer f_P used in training (the anonymizer was optimised against it), but
from a *fresh* classifier: a ResNet trained from scratch on the anonymized training visuals to
predict the privacy attributes, whose class-wise mAP on the anonymized test visuals is reported
(lower is better privacy; chance is the attributes' prevalence).

Training minimises the multi-label binary cross-entropy

    L = -(1 / (B P)) sum_{b, p} [y_bp log s(z_bp) + (1 - y_bp) log(1 - s(z_bp))]

with AdamW and a cosine-decayed learning rate; batches are drawn by shuffling epochs with a
seeded generator, so the result is a deterministic function of the inputs and `seed`. Testing
uses BatchNorm's running statistics.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from anonymax import metrics
from anonymax.models import CLASSIFIER_NAMES, get_model


def _check_split(visuals: Any, labels: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Validates one split; returns float32 visuals and labels as numpy arrays."""
  visuals = np.asarray(visuals)
  labels = np.asarray(labels)
  if visuals.ndim not in (4, 5) or visuals.shape[-1] != 3:
    raise ValueError(
      f"{split}_visuals must be images [N, H, W, 3] or clips [N, T, H, W, 3], got {visuals.shape}"
    )
  if not np.issubdtype(visuals.dtype, np.floating):
    raise ValueError(f"{split}_visuals must be float in [0, 1], got dtype {visuals.dtype}")
  visuals = visuals.astype(np.float32, copy=False)
  if visuals.size and not (
    np.isfinite(visuals).all() and 0.0 <= visuals.min() <= visuals.max() <= 1.0
  ):
    raise ValueError(f"{split}_visuals must be finite values in [0, 1]")
  if labels.ndim != 2:
    raise ValueError(f"{split}_labels must be multi-hot [N, P], got shape {labels.shape}")
  if labels.shape[0] != visuals.shape[0]:
    raise ValueError(
      f"{split}_visuals has {visuals.shape[0]} examples but {split}_labels has {labels.shape[0]}"
    )
  if visuals.shape[0] == 0:
    raise ValueError(f"{split}_visuals is empty")
  if not np.isin(labels, (0, 1)).all():
    raise ValueError(f"{split}_labels must be multi-hot (0/1)")
  return visuals, labels.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _compiled_steps(net: nn.Module, learning_rate: float, weight_decay: float, steps: int):
  """Builds (optimizer, jitted train step, jitted predict), cached per configuration.

  The evaluator judges every comparison row with the same configuration, so caching lets the
  rows share one compilation.
  """
  schedule = optax.cosine_decay_schedule(learning_rate, max(steps, 1))
  tx = optax.adamw(schedule, weight_decay=weight_decay)

  def loss_fn(params, batch_stats, x, y):
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    logits, updates = net.apply(variables, x, train=True, mutable=["batch_stats"])
    loss = optax.sigmoid_binary_cross_entropy(logits, y).mean()
    return loss, updates.get("batch_stats", batch_stats)

  @jax.jit
  def train_step(params, batch_stats, opt_state, x, y):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch_stats, x, y
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  @jax.jit
  def predict(params, batch_stats, x):
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    return net.apply(variables, x, train=False)

  return tx, train_step, predict


def _predict_all(predict, params, batch_stats, visuals: np.ndarray, batch_size: int) -> np.ndarray:
  """Scores [N, P] in fixed-size batches (the last one padded) so predict compiles once."""
  n = visuals.shape[0]
  batch_size = min(batch_size, n)
  out = []
  for start in range(0, n, batch_size):
    x = visuals[start : start + batch_size]
    pad = batch_size - x.shape[0]
    if pad:
      x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)
    out.append(np.asarray(predict(params, batch_stats, x))[: batch_size - pad])
  return np.concatenate(out, axis=0)


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
  """Trains a fresh ResNet on anonymized training visuals; returns its test cMAP.

  cMAP = (1/|C|) sum_{c in C} AP_c(test_labels[:, c], s(f(test_visuals))[:, c]), over the
  classes C with a positive test example (see `anonymax.metrics.cmap`).

  Args:
    train_visuals: float32 [N, H, W, 3] or [N, T, H, W, 3] in [0, 1], already anonymized.
    train_labels: float32 multi-hot [N, P] privacy attributes.
    test_visuals: anonymized test visuals, same layout as the training ones.
    test_labels: float32 multi-hot [M, P].
    model: one of "resnet50", "resnet18", "resnet_tiny"; the paper's judge is "resnet50".
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
  x_train, y_train = _check_split(train_visuals, train_labels, "train")
  x_test, y_test = _check_split(test_visuals, test_labels, "test")
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
  net = get_model(model, num_classes=y_train.shape[1], **kwargs)
  config = (net, float(learning_rate), float(weight_decay), int(steps))
  try:
    hash(config)
  except TypeError:  # a list-valued field: build uncached
    tx, train_step, predict = _compiled_steps.__wrapped__(*config)
  else:
    tx, train_step, predict = _compiled_steps(*config)

  n = x_train.shape[0]
  batch_size = min(batch_size, n)
  variables = net.init(jax.random.PRNGKey(seed), jnp.asarray(x_train[:1]), train=False)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  opt_state = tx.init(params)

  order_rng = np.random.default_rng(seed)
  order, cursor = order_rng.permutation(n), 0
  bar = tqdm(range(steps), desc=f"privacy judge ({model})", disable=not progress, leave=False)
  for step in bar:
    if cursor + batch_size > n:  # new epoch: reshuffle, dropping the incomplete remainder
      order, cursor = order_rng.permutation(n), 0
    idx = np.sort(order[cursor : cursor + batch_size])
    cursor += batch_size
    params, batch_stats, opt_state, loss = train_step(
      params, batch_stats, opt_state, x_train[idx], y_train[idx]
    )
    if progress and (step % 50 == 0 or step == steps - 1):
      bar.set_postfix(loss=f"{float(loss):.4f}")
  bar.close()

  scores = _predict_all(predict, params, batch_stats, x_test, eval_batch_size)
  per_class_ap = [
    metrics.average_precision(y_test[:, c], scores[:, c]) if y_test[:, c].any() else float("nan")
    for c in range(y_test.shape[1])
  ]
  return {"cmap": metrics.cmap(y_test, scores), "per_class_ap": per_class_ap, "steps": int(steps)}
