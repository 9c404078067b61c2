"""Training engine of the privacy judges: compiled programs, batch order and augmentation.

A judge is a classifier f_θ trained from scratch to predict the privacy attributes y ∈ {0, 1}^P
of (anonymized) visuals x by minimising the multi-label binary cross-entropy

    L(θ) = -(1 / (B P)) Σ_{b, p} [y_bp log σ(z_bp) + (1 - y_bp) log(1 - σ(z_bp))],  z = f_θ(a(x))

with AdamW, the learning rate warmed up linearly over the first `warmup_steps` and cosine-decayed
to 0 at `steps`; a(·) is the augmentation (`augment`). Batches come from seeded epochs
(`batch_indices`), so a judge is a deterministic function of its data, its config and its seed.

Every program here is compiled once per (configuration, data shape) and reused: for every row
of an evaluation (the rows share shapes), and for every seed (the seed is an argument, not a
constant). `rows > 1` stacks that many rows on a leading axis and trains them in one program with
`jax.vmap`: row r has its own parameters, optimizer state and data, and all rows share the batch
indices and augmentation draws of the seed, so each row is trained exactly as it would be alone.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """What a compiled judge program depends on (hashable: the key of the program cache).

  Attributes:
    net: the classifier (an unbound flax module with `__call__(x, train)`).
    steps: training steps; the learning-rate schedule spans them.
    batch_size: examples per step.
    learning_rate: peak AdamW learning rate.
    weight_decay: AdamW decoupled weight decay.
    warmup_steps: linear warm-up steps before the cosine decay (0: none).
    crop_pad: random-crop translation range in pixels (0: no crops).
    flip: random horizontal flips.
    noise_std: standard deviation of additive per-pixel Gaussian noise (0: none).
  """

  net: nn.Module
  steps: int
  batch_size: int
  learning_rate: float
  weight_decay: float = 1e-4
  warmup_steps: int = 0
  crop_pad: int = 0
  flip: bool = False
  noise_std: float = 0.0


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
  """Training batches [steps, batch_size] of example indices, drawn by seeded epochs.

  Each epoch is a fresh permutation of range(n) cut into batches; an epoch's incomplete remainder
  is dropped, so every example appears at most once per epoch. Indices within a batch are sorted
  (the order inside a batch does not change a step, and sorted gathers read memory in order).
  """
  if not 1 <= batch_size <= n:
    raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
  rng = np.random.default_rng(seed)
  out = np.empty((steps, batch_size), np.int32)
  order, cursor = rng.permutation(n), 0
  for step in range(steps):
    if cursor + batch_size > n:
      order, cursor = rng.permutation(n), 0
    out[step] = np.sort(order[cursor : cursor + batch_size])
    cursor += batch_size
  return out


def augment(key, x: jnp.ndarray, *, pad: int, flip: bool, noise_std: float = 0.0) -> jnp.ndarray:
  """Random translation, horizontal flip and pixel noise of a batch, example by example.

  x' = clip(F_b(T_b(E_pad(x_b))) + σ ε_b, 0, 1): E_pad replicates the edge pixels `pad` times on
  every side, T_b crops an H×W window at a uniformly drawn offset in [0, 2 pad]^2 (a translation
  by at most `pad` pixels), F_b mirrors left-right with probability 1/2, ε_b ~ N(0, 1) per pixel.
  A clip [T, H, W, 3] gets one draw for all its frames. Only pixels move: example b stays at
  index b, so labels indexed like the batch still belong to their images.

  Edge replication rather than zero padding: a black band would be a new feature that no test
  image has (and that blackening anonymizers would share).

  Args:
    key: a PRNG key.
    x: float images [B, H, W, 3] or clips [B, T, H, W, 3] in [0, 1].
    pad: the translation range in pixels (0: none).
    flip: mirror with probability 1/2.
    noise_std: σ (0: none).

  Returns:
    The augmented batch, same shape and dtype.
  """
  batch, height, width = x.shape[0], x.shape[-3], x.shape[-2]
  k_crop, k_flip, k_noise = jax.random.split(key, 3)
  lead = x.ndim - 4  # 1 for clips: the frame axis, which every draw leaves alone
  if pad:
    widths = [(0, 0)] * (1 + lead) + [(pad, pad), (pad, pad), (0, 0)]
    padded = jnp.pad(x, widths, mode="edge")
    offsets = jax.random.randint(k_crop, (batch, 2), 0, 2 * pad + 1)

    def crop(example, offset):
      start = (0,) * lead + (offset[0], offset[1], 0)
      return jax.lax.dynamic_slice(example, start, example.shape[:lead] + (height, width, 3))

    x = jax.vmap(crop)(padded, offsets)
  if flip:
    mirror = jax.random.bernoulli(k_flip, 0.5, (batch,)).reshape((batch,) + (1,) * (x.ndim - 1))
    x = jnp.where(mirror, jnp.flip(x, axis=-2), x)
  if noise_std:
    x = jnp.clip(x + noise_std * jax.random.normal(k_noise, x.shape, x.dtype), 0.0, 1.0)
  return x


def _as_float(x: jnp.ndarray) -> jnp.ndarray:
  """uint8 [0, 255] → float32 [0, 1]; float visuals are taken as they are (already in [0, 1])."""
  if x.dtype == jnp.uint8:
    return x.astype(jnp.float32) / 255.0
  return x.astype(jnp.float32)


def _variables(params, batch_stats) -> dict:
  return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


@functools.lru_cache(maxsize=32)
def programs(config: TrainConfig, rows: int) -> tuple[Callable, Callable, Callable]:
  """(init, train_step, predict), jitted; `rows` > 1 maps them over a leading row axis.

    init(seed, example)                    -> state = (params, batch_stats, opt_state)
    train_step(state, x, y, idx, seed, i)  -> (state, loss)   x: [(R,) N, ...], y: [N, P]
    predict(state, x)                      -> logits [(R,) B, P]

  The seed and the step number are traced arguments, so every seed and every step share one
  compilation; the augmentation key is fold_in(fold_in(PRNGKey(seed), 1), i), the same for every
  row of a batched program.
  """
  net = config.net
  if config.warmup_steps:
    schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, config.warmup_steps, max(config.steps, config.warmup_steps + 1)
    )
  else:
    schedule = optax.cosine_decay_schedule(config.learning_rate, max(config.steps, 1))
  tx = optax.adamw(schedule, weight_decay=config.weight_decay)

  def init(seed, example):
    variables = net.init(jax.random.PRNGKey(seed), _as_float(example), train=False)
    params = variables["params"]
    return params, variables.get("batch_stats", {}), tx.init(params)

  def loss_fn(params, batch_stats, x, y):
    logits, updates = net.apply(
      _variables(params, batch_stats), x, train=True, mutable=["batch_stats"]
    )
    loss = optax.sigmoid_binary_cross_entropy(logits, y).mean()
    return loss, updates.get("batch_stats", batch_stats)

  def train_step(state, x_all, y_all, idx, seed, step):
    params, batch_stats, opt_state = state
    x, y = _as_float(x_all[idx]), y_all[idx]
    if config.crop_pad or config.flip or config.noise_std:
      key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 1), step)
      x = augment(key, x, pad=config.crop_pad, flip=config.flip, noise_std=config.noise_std)
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch_stats, x, y
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  def predict(state, x):
    params, batch_stats, _ = state
    return net.apply(_variables(params, batch_stats), _as_float(x), train=False)

  if rows > 1:
    # Every row starts from the same initialisation (the seed's), as it would alone.
    init = jax.vmap(init, in_axes=(None, None), axis_size=rows)
    train_step = jax.vmap(train_step, in_axes=(0, 0, None, None, None, None))
    predict = jax.vmap(predict)
  return jax.jit(init), jax.jit(train_step, donate_argnums=0), jax.jit(predict)


def fit_and_score(
  config: TrainConfig,
  seed: int,
  train_x: np.ndarray,
  train_y: np.ndarray,
  test_x: np.ndarray,
  *,
  rows: int = 1,
  eval_batch_size: int = 256,
  on_step: Callable[[int, Any], None] | None = None,
  loss_every: int = 50,
) -> np.ndarray:
  """Trains one judge (per row) and returns its test logits.

  Args:
    config: the judge's training configuration.
    seed: seeds the initialisation, the batch order and the augmentation.
    train_x: training visuals [N, ...] (rows=1) or [R, N, ...], float in [0, 1] or uint8.
    train_y: multi-hot labels [N, P], shared by the rows.
    test_x: test visuals [M, ...] or [R, M, ...], same layout as train_x.
    rows: R, the number of rows stacked on the leading axis (1: no row axis).
    eval_batch_size: test examples per predict call (the last batch padded: one compilation).
    on_step: called as on_step(steps_done, loss) every step; loss is a device scalar every
      `loss_every` steps and at the end (reading it waits for the device), None otherwise.
    loss_every: see `on_step`.

  Returns:
    float32 logits [M, P] (rows=1) or [R, M, P].
  """
  init, train_step, predict = programs(config, rows)
  n = train_x.shape[1 if rows > 1 else 0]
  idx = batch_indices(n, min(config.batch_size, n), config.steps, seed)
  per_example = train_x.shape[2:] if rows > 1 else train_x.shape[1:]
  state = init(np.int32(seed), np.zeros((1, *per_example), train_x.dtype))
  x_all, y_all = jax.device_put(train_x), jax.device_put(train_y)
  for step in range(config.steps):
    state, loss = train_step(state, x_all, y_all, idx[step], np.int32(seed), np.int32(step))
    if on_step is not None:
      report = step % loss_every == 0 or step == config.steps - 1
      on_step(step + 1, loss if report else None)
  del x_all

  m = test_x.shape[1 if rows > 1 else 0]
  size = min(eval_batch_size, m)
  out = []
  for start in range(0, m, size):
    chunk = test_x[:, start : start + size] if rows > 1 else test_x[start : start + size]
    short = size - chunk.shape[1 if rows > 1 else 0]
    if short:  # pad with copies of the last example so every call has one shape
      axis = 1 if rows > 1 else 0
      last = chunk[:, -1:] if rows > 1 else chunk[-1:]
      chunk = np.concatenate([chunk, np.repeat(last, short, axis=axis)], axis=axis)
    logits = np.asarray(predict(state, chunk))
    out.append(logits[:, : size - short] if rows > 1 else logits[: size - short])
  return np.concatenate(out, axis=1 if rows > 1 else 0).astype(np.float32)
