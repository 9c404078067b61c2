"""The pieces of a training step that the reference and the pipelined step share.

Visuals arrive as uint8 and are scaled to [0, 1] on the device. Every function here is pure and
traceable; the steps decide how they are grouped into jitted programs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from anonymax import losses
from anonymax.types import STATUS_OK


def to_unit(visuals: jax.Array) -> jax.Array:
  """uint8 visuals → float32 in [0, 1]."""
  return visuals.astype(jnp.float32) / 255.0


def anonymize_all(anonymizer, param_sets, x: jax.Array, *, stacked: bool = False) -> jax.Array:
  """f_A(x; θ_i) for every parameter set i, as one batch [S·B, ...] (set-major), or [S, B, ...]
  when `stacked` (B split over devices stays split: merging it with S would gather it).

  Args:
    anonymizer: the anonymizer module f_A.
    param_sets: a parameter tree whose leaves have a leading axis of S sets (`ask`'s output).
    x: float visuals [B, ...] in [0, 1].

  A vmap over the sets would turn every conv into a grouped conv, which XLA:CPU runs several
  times slower than S plain ones; S is small and static, so the passes are unrolled. Leaves
  outside the perturbed subset are the same θ in every set (broadcast, not recomputed), so the
  layers below the first perturbed one see identical inputs in all S passes and XLA computes
  them once (common-subexpression elimination).
  """
  num_sets = jax.tree.leaves(param_sets)[0].shape[0]
  outs = [
    anonymizer.apply({"params": jax.tree.map(lambda p, i=i: p[i], param_sets)}, x)
    for i in range(num_sets)
  ]
  out = jnp.stack(outs)  # [S, B, ...]
  if stacked:
    return out
  return out.reshape((num_sets * x.shape[0], *out.shape[2:]))


class Answers(NamedTuple):
  """The oracle's per-sample answers of one step, reduced per parameter set.

  A sample counts for perturbation i only if the black box scored it under both θ + c_kΔ_i and
  θ − c_kΔ_i (its pair), so L⁺_i and L⁻_i average the same samples.
  """

  losses: jax.Array  # float32 [2q]: mean loss of each set over its pair-scored samples; NaN if none
  l_mllm: jax.Array  # float32 []: L_MLLM(θ_k) ≈ mean over usable pairs of (L⁺_i + L⁻_i)/2
  any_usable: jax.Array  # bool []: some pair was scored on both sides
  pairs_scored: jax.Array  # int32 []: pair-scored samples, summed over the q perturbations
  scored: jax.Array  # int32 []: samples the oracle scored (status OK)
  sent: jax.Array  # int32 []: samples sent (2qB)


def per_set_losses(
  sample_losses: jax.Array, status: jax.Array, num_sets: int, *, antithetic: bool = True
) -> Answers:
  """`Answers` from the oracle's losses and status [S·B] (set-major, pluses then minuses).

  A set's loss is its mean over the samples scored in both sets of its pair (i, q + i) or, for
  an estimator that compares all sets with each other (``antithetic=False``), in all S sets.
  """
  q = num_sets // 2
  batch = sample_losses.shape[0] // num_sets
  ok = (status == STATUS_OK).reshape(2, q, batch)
  pair_ok = ok[0] & ok[1]  # [q, B]
  if not antithetic:
    pair_ok = jnp.broadcast_to(jnp.all(pair_ok, axis=0), pair_ok.shape)
  n_ok = pair_ok.sum(axis=-1)  # [q]
  denom = jnp.maximum(n_ok, 1).astype(jnp.float32)
  per_sample = sample_losses.reshape(2, q, batch)
  means = jnp.where(pair_ok, per_sample, 0.0).sum(-1) / denom  # [2, q]
  usable = n_ok > 0
  set_losses = jnp.where(usable, means, jnp.nan).reshape(num_sets)
  weight = usable.astype(jnp.float32)
  l_mllm = ((means[0] + means[1]) * 0.5 * weight).sum() / jnp.maximum(weight.sum(), 1.0)
  return Answers(
    losses=set_losses,
    l_mllm=l_mllm,
    any_usable=usable.any(),
    pairs_scored=n_ok.sum().astype(jnp.int32),
    scored=(status == STATUS_OK).sum().astype(jnp.int32),
    sent=jnp.asarray(num_sets * batch, jnp.int32),
  )


def reviewer_logits(reviewer, variables, x: jax.Array, train: bool):
  """f_P's logits; in train mode with BatchNorm also its new batch statistics (else None)."""
  if train and "batch_stats" in variables:
    logits, new = reviewer.apply(variables, x, train=True, mutable=["batch_stats"])
    return logits, new["batch_stats"]
  return reviewer.apply(variables, x, train=train), variables.get("batch_stats")


def privacy_value_and_grad(anonymizer, reviewer, kind: str, params, reviewer_vars, x_p, labels):
  """(L_Privacy(θ), h = ∇_θ L_Privacy): the privacy loss of f_P ∘ f_A and its exact gradient.

  L_Privacy = losses.privacy_loss(f_P(f_A(x; θ)), kind, labels), the reviewer in eval mode.
  """

  def objective(theta):
    anonymized = anonymizer.apply({"params": theta}, x_p)
    logits, _ = reviewer_logits(reviewer, reviewer_vars, anonymized, False)
    return losses.privacy_loss(logits, kind, labels=labels)

  return jax.value_and_grad(objective)(params)


def reviewer_update(
  anonymizer, reviewer, reviewer_tx, params, reviewer_vars, reviewer_opt_state, x_p, labels
) -> tuple[dict, Any, jax.Array]:
  """One step of f_P on f_A(x; θ_k) with BCE (the adversarial alternation).

  Returns:
    (new reviewer variables, new optimizer state, the BCE before the step).
  """
  anonymized = jax.lax.stop_gradient(anonymizer.apply({"params": params}, x_p))

  def objective(rparams):
    logits, stats = reviewer_logits(
      reviewer, {**reviewer_vars, "params": rparams}, anonymized, True
    )
    return losses.reviewer_bce(logits, labels), stats

  (bce, stats), grads = jax.value_and_grad(objective, has_aux=True)(reviewer_vars["params"])
  updates, new_opt_state = reviewer_tx.update(grads, reviewer_opt_state, reviewer_vars["params"])
  new_vars = {**reviewer_vars, "params": optax.apply_updates(reviewer_vars["params"], updates)}
  if stats is not None:
    new_vars["batch_stats"] = stats
  return new_vars, new_opt_state, bce


def step_metrics(answers: Answers, l_privacy, bce, c_k, g_hat, h, updates, opt_state) -> dict:
  """The scalars a step reports (metrics.jsonl, the progress bar)."""
  return {
    "l_mllm": answers.l_mllm,
    "l_privacy": l_privacy,
    "reviewer_bce": bce,
    "c_k": c_k,
    "pairs_scored": answers.pairs_scored,
    "g_hat_norm": optax.tree.norm(g_hat),
    "privacy_grad_norm": optax.tree.norm(h),
    "update_norm": optax.tree.norm(updates),
    "indicator": opt_state.indicator,
    "selected": opt_state.selected,
  }
