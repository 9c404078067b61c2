"""Losses: L_Privacy on the privacy reviewer's logits and the reviewer's own BCE (JAX).

L_Privacy (white box, differentiated through f_P ∘ f_A) is computed here with jnp and is jit-able;
the `kind` argument is a Python string and must be static under `jax.jit`
(``jax.jit(privacy_loss, static_argnames="kind")``). The reviewer f_P is a multi-label classifier:
P sigmoid outputs, one per privacy attribute.

The utility losses L_MLLM come from the black box and are computed on the host, inside the
oracle, which must not call JAX: they live in `anonymax.utility_losses`.

The ideal point z* of the Tchebycheff scalarization needs each loss's minimum: `privacy_ideal`
gives it for L_Privacy. For the utility losses it is 0 (`UTILITY_IDEAL`).

References:
  Wu et al., "Privacy-Preserving Deep Action Recognition: An Adversarial Learning Framework and A
  New Dataset", TPAMI 2020 (the negative-entropy privacy budget).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

PRIVACY_LOSSES = ("neg_entropy", "bce_to_half", "neg_bce")

# Default per-element cap of the "neg_bce" loss: log(100) ≈ 4.6 nats, reached when the reviewer
# gives the true attribute value a probability of 1 %; fooling it further earns nothing.
DEFAULT_MAX_BCE = math.log(100.0)

# Minimum of every utility loss of `anonymax.utility_losses` (1 − accuracy, NLL, −log p): 0.
UTILITY_IDEAL = 0.0

_LOG2 = math.log(2.0)


def _check_kind(kind: str) -> str:
  if kind not in PRIVACY_LOSSES:
    raise ValueError(f"privacy loss kind={kind!r}: must be one of {PRIVACY_LOSSES}")
  return kind


def _check_max_bce(max_bce: float) -> float:
  try:
    # Strings and bools would convert silently; a cap must be a real number.
    value = math.nan if isinstance(max_bce, str | bool) else float(max_bce)
  except (TypeError, ValueError):
    value = math.nan
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f"max_bce={max_bce!r}: must be a finite Python number > 0 (static under jit)")
  return value


def _check_same_shape(logits: jax.Array, labels: jax.Array) -> None:
  if jnp.shape(logits) != jnp.shape(labels):
    raise ValueError(
      f"labels shape {jnp.shape(labels)} differs from logits shape {jnp.shape(logits)}"
    )


def binary_entropy(logits: jax.Array) -> jax.Array:
  """Elementwise binary entropy of σ(logits), in nats, computed stably from the logits.

  H(x) = −p log p − (1 − p) log(1 − p),  p = σ(x)
       = p · softplus(−x) + (1 − p) · softplus(x)

  (using −log σ(x) = softplus(−x) and −log(1 − σ(x)) = softplus(x)), so no log of 0 is ever taken.
  H(0) = log 2 (the maximum); H(x) → 0 as |x| → ∞.

  Args:
    logits: any-shape array of logits x.

  Returns:
    H(x), same shape, in [0, log 2].
  """
  p = jax.nn.sigmoid(logits)
  return p * jax.nn.softplus(-logits) + (1.0 - p) * jax.nn.softplus(logits)


def privacy_loss(
  logits: jax.Array,
  kind: str = "neg_entropy",
  labels: jax.Array | None = None,
  *,
  max_bce: float = DEFAULT_MAX_BCE,
) -> jax.Array:
  """L_Privacy on the reviewer's logits: small when f_P cannot tell the privacy attributes.

  With x = logits [B, P], p = σ(x), y = labels, means over all B·P elements:

    "neg_entropy" (default):  L = −mean H(x)
        Pushes every attribute's probability to 1/2 (maximal uncertainty). Minimum −log 2 at
        x = 0; tends to 0 as |x| → ∞ (a confident reviewer, right or wrong).
    "bce_to_half":            L = mean BCE(x, 1/2) = mean ½ (softplus(x) + softplus(−x))
        The cross-entropy towards uniform targets, = KL(½ ‖ p) + log 2. Minimum exactly log 2 at
        x = 0; grows like |x|/2 for large |x| (penalises confident wrong *and* right answers).
    "neg_bce":                L = −mean min(BCE(x, y), max_bce)
        Maximises the reviewer's error on the true labels (adversarial). Raw −BCE is unbounded
        below (the optimum would be a confidently *wrong* reviewer, which also leaks the
        attribute); capping each element at `max_bce` makes the ideal point finite, −max_bce,
        reached once every element's true-value probability is ≤ exp(−max_bce). Capped elements
        get zero gradient.

  BCE(x, y) = −y log σ(x) − (1 − y) log(1 − σ(x)) (`optax.sigmoid_binary_cross_entropy`).

  Args:
    logits: float [B, P] reviewer logits (any shape works; the mean is over all elements).
    kind: one of `PRIVACY_LOSSES` (static under jit).
    labels: float/bool [B, P] attribute labels in [0, 1]; required by "neg_bce", ignored otherwise.
    max_bce: per-element cap of "neg_bce" (> 0), in nats.

  Returns:
    The scalar loss, dtype of `logits` (float32 for integer input).

  Raises:
    ValueError: unknown `kind`, missing or mis-shaped `labels` for "neg_bce", bad `max_bce`.

  Example:
    >>> float(privacy_loss(jnp.zeros((2, 7))))  # −log 2
    -0.6931...
  """
  _check_kind(kind)
  logits = jnp.asarray(logits)
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    logits = logits.astype(jnp.float32)
  if kind == "neg_entropy":
    return -jnp.mean(binary_entropy(logits))
  if kind == "bce_to_half":
    half = jnp.full_like(logits, 0.5)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, half))
  # neg_bce
  max_bce = _check_max_bce(max_bce)
  if labels is None:
    raise ValueError('privacy loss kind="neg_bce" needs labels (the true attribute values)')
  labels = jnp.asarray(labels)
  _check_same_shape(logits, labels)
  bce = optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))
  return -jnp.mean(jnp.minimum(bce, max_bce))


def privacy_ideal(kind: str = "neg_entropy", *, max_bce: float = DEFAULT_MAX_BCE) -> float:
  """The ideal point z* of L_Privacy: the minimum of `privacy_loss` of that kind.

  z*("neg_entropy") = −log 2,  z*("bce_to_half") = log 2,  z*("neg_bce") = −max_bce.

  Args:
    kind: one of `PRIVACY_LOSSES`.
    max_bce: the "neg_bce" cap (validated for every kind, so one config can serve all kinds).

  Returns:
    z*, a Python float.

  Raises:
    ValueError: unknown `kind` or bad `max_bce`.
  """
  _check_kind(kind)
  max_bce = _check_max_bce(max_bce)
  if kind == "neg_entropy":
    return -_LOG2
  if kind == "bce_to_half":
    return _LOG2
  return -max_bce


def reviewer_bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The reviewer's training loss: mean sigmoid binary cross-entropy.

  L = mean_{b,p} BCE(x_bp, y_bp) = mean −y log σ(x) − (1 − y) log(1 − σ(x)),
  evaluated stably as max(x, 0) − x·y + log(1 + e^{−|x|}).

  Args:
    logits: float [B, P] reviewer logits.
    labels: [B, P] attribute labels in [0, 1] (bool, int or float; soft labels allowed).

  Returns:
    The scalar loss.

  Raises:
    ValueError: if the shapes differ.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  _check_same_shape(logits, labels)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype)))
