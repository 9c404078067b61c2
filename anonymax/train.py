"""Trains the anonymizer against a black-box MLLM and an adversarial privacy reviewer.

One step (DESIGN.md §3), as jitted parts (see `TrainStep`):
  1. Δ_k ← Rademacher(fold_in(key, k)); θ ± c_k Δ_k; both perturbed anonymizations of the utility
     batch.
  2. One ordered host callback sends the 2B anonymized visuals (never raw ones) to the oracle, which
     answers per-sample losses + status; ĝ_k = (L⁺ − L⁻)/(2c_k)·Δ_k over the samples scored in
     both (Eq. 7), and L_MLLM(θ_k) ≈ (L⁺ + L⁻)/2.
  3. L_Privacy and its exact gradient h_k through f_P ∘ f_A (on the devices while the oracle
     answers: the callback hands the visuals over and returns, it does not wait).
  4. critical history on ĝ_k → scalarization of (L_MLLM, L_Privacy) → −a_k → apply (Eqs. 8–12).
  5. The reviewer f_P takes a BCE step on f_A(x; θ_k) of the privacy batch (adversarial
     alternation).
The host loop logs, checkpoints (orbax) and resumes; the data position is the step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from tqdm import tqdm

from anonymax import checkpoint, losses, metric_writers, models, optim, parallel
from anonymax.data import pipeline
from anonymax.oracles.base import STATUS_OK, Oracle
from anonymax.oracles.bridge import OracleBridge
from anonymax.oracles.factory import make_oracle


# ----------------------------------------------------------------------------------------------
# State.
# ----------------------------------------------------------------------------------------------
@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 [] — steps done; also the data position
  params: Any  # anonymizer params θ
  opt_state: Any  # MultiObjectiveOptimizer state (critical-history ring included)
  reviewer_vars: Any  # {"params": ..., ["batch_stats": ...]} of f_P
  reviewer_opt_state: Any  # optax state of the reviewer's optimizer
  rng: jax.Array  # uint32 [2] key data; step keys are fold_in(rng, step)
  oracle_samples: jax.Array  # int32 [] — samples sent to the oracle so far
  skipped: jax.Array  # int32 [] — samples the oracle could not score (skipped)


# The fields `TrainStep.combine` updates; the reviewer's are updated by `privacy`.
UPDATED_FIELDS = ("step", "params", "opt_state", "oracle_samples", "skipped")


def build_models(config):
  """The anonymizer f_A and the reviewer f_P named in the config."""
  anonymizer = models.get_model(
    config.anonymizer.name,
    **{k: v for k, v in config.anonymizer.items() if k != "name"},
  )
  reviewer = models.get_model(
    config.reviewer.name,
    num_classes=config.reviewer.num_classes,
    **config.reviewer.get("kwargs", {}),
  )
  return anonymizer, reviewer


def reviewer_optimizer(config) -> optax.GradientTransformation:
  return optax.adam(config.reviewer.learning_rate)


def init_reviewer(reviewer, key, sample):
  return flax.core.unfreeze(reviewer.init(key, sample, train=False))


def create_state(config, anonymizer, reviewer, optimizer, visual_shape) -> TrainState:
  """A fresh state for visuals of shape `visual_shape` (without the batch axis)."""
  rng = jax.random.key(config.seed)
  k_anon, k_rev, k_loop = jax.random.split(rng, 3)
  sample = jnp.zeros((1, *visual_shape), jnp.float32)
  params = anonymizer.init(k_anon, sample)["params"]
  reviewer_vars = init_reviewer(reviewer, k_rev, sample)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=optimizer.init(flat_parameters(params)),
    reviewer_vars=reviewer_vars,
    reviewer_opt_state=reviewer_optimizer(config).init(reviewer_vars["params"]),
    rng=jax.random.key_data(k_loop),
    oracle_samples=jnp.zeros((), jnp.int32),
    skipped=jnp.zeros((), jnp.int32),
  )


def flat_parameters(tree) -> jax.Array:
  """θ (or a tree like it) as the one vector the anonymizer's optimizer works on.

  The optimizer's work is elementwise plus a few norms over the whole tree (Eqs. 8-12), so on one
  vector it is a handful of kernels; per leaf it would be hundreds of tiny ones, and they sit on
  the step's serial path, between the oracle's answer and the next step's oracle call.
  """
  return ravel_pytree(tree)[0]


def parameter_layout(tree):
  """What `unflatten_parameters` needs to rebuild `tree` from its vector: (treedef, shapes)."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((tuple(x.shape), jnp.dtype(x.dtype)) for x in leaves)


def unflatten_parameters(vector: jax.Array, layout) -> Any:
  """The inverse of `flat_parameters` for a tree of `parameter_layout` `layout`."""
  treedef, specs = layout
  sizes = [math.prod(shape) for shape, _ in specs]
  parts = jnp.split(vector, np.cumsum(sizes)[:-1].tolist())
  leaves = [p.reshape(shape).astype(dtype) for p, (shape, dtype) in zip(parts, specs)]
  return jax.tree.unflatten(treedef, leaves)


# ----------------------------------------------------------------------------------------------
# The update step.
# ----------------------------------------------------------------------------------------------
def _apply_reviewer(reviewer, variables, x, train: bool):
  """Reviewer logits; with BatchNorm in train mode also returns the new batch stats."""
  if train and "batch_stats" in variables:
    logits, new = reviewer.apply(variables, x, train=True, mutable=["batch_stats"])
    return logits, new["batch_stats"]
  return reviewer.apply(variables, x, train=train), variables.get("batch_stats")


def perturbation_for(zo_method: str):
  """(draw Δ, estimate ĝ from one ± pair) for a zeroth-order method.

  SPSA and ours: Rademacher Δ, ĝ = (L⁺ − L⁻)/(2c)·Δ⁻¹ (Eq. 7). SPSA-GC: BlackVIP's ±U[0.5, 1] Δ
  with the same estimate. ES: Gaussian ε, ĝ = (L⁺ − L⁻)/(2σ)·ε (antithetic, OpenAI-ES).
  """
  if zo_method in ("ours", "spsa"):
    return optim.rademacher_like, optim.spsa_estimate
  if zo_method == "spsa_gc":
    return optim.uniform_rademacher_like, optim.spsa_estimate
  if zo_method == "es":

    def es_estimate(l_plus, l_minus, eps, sigma):
      scale = (l_plus - l_minus) / (2.0 * sigma)
      return jax.tree.map(lambda e: (scale * e).astype(e.dtype), eps)

    return optim.normal_like, es_estimate
  raise ValueError(f"config.optim.zo_method={zo_method!r}: one of ours, spsa, spsa_gc, es")


def optimizer_config(config) -> dict:
  """The part of `config.optim` that `optim.make_optimizer` reads."""
  return {k: v for k, v in config.optim.to_dict().items() if k in optim.DEFAULT_CONFIG}


class TrainStep:
  """One training step as jitted parts, the oracle's wait overlapped with the privacy work.

  * `perturb`: θ ± c_k Δ_k and the 2q perturbed anonymizations of the utility batch;
  * `send`: one ordered `io_callback` that hands the 2qB anonymized visuals to the oracle
    (`OracleBridge.send`) and returns without waiting for its answer (DESIGN.md §3 step 2);
  * `privacy`: L_Privacy, h_k and the reviewer's BCE step on f_A(x; θ_k), which need no oracle
    answer, run on the devices while the oracle answers (steps 3 and 5); then `draw_next`
    draws Δ_{k+1}, a function of the key and k + 1 alone;
  * `combine`: ĝ_k from the answers (`OracleBridge.receive`), then critical history →
    scalarization → −a_k, applied to the state (step 4; the state's fields are donated), and
    c_{k+1}. Given the next step's utility visuals (`next_visuals`), `combine_perturb` does the
    same and then the next step's `perturb`, in one program.
  `prepare` computes Δ_k and c_k itself when no prepared ones match the state (the first step,
  a restored or otherwise replaced state), and `perturb` runs on its own when no anonymizations
  were prepared for the state and these visuals.

  The serial path, which no oracle latency can hide, is `combine`, the next `perturb` and
  `send`. `combine_perturb` makes the first two one program: one dispatch instead of two, no
  idle gap between them, and the host's work between steps (the loop's logging, the next call)
  runs while the device computes. `send` stays apart and takes two arrays: its callback makes
  every call take JAX's Python dispatch path, whose cost grows with the number of arguments,
  and that path is taken while the perturbed anonymizations are being computed.

  No device waits for the oracle: a callback that did would hold a GPU's stream, and on several
  devices the others' collectives, for the oracle's whole latency. The parts never run at the
  same time either (`privacy` starts once `send` is done), so multi-device programs cannot
  interleave their collectives. Every part is a function of the step-k state (and the batches),
  so a step is deterministic and a resumed run repeats it exactly: the anonymizations
  `combine_perturb` prepares equal those `perturb` computes (tested).
  """

  def __init__(
    self,
    prepare,
    perturb,
    send,
    privacy,
    draw_next,
    combine,
    combine_perturb,
    bridge: OracleBridge,
  ):
    self.prepare, self.perturb, self.send, self.privacy = prepare, perturb, send, privacy
    self.draw_next, self.combine, self.combine_perturb = draw_next, combine, combine_perturb
    self.bridge = bridge
    self._prepared: Prepared | None = None
    self._layout = None  # θ's `parameter_layout`, the same for every step

  @staticmethod
  def _key(state: TrainState):
    return (state.params, state.opt_state, state.rng, state.step)

  def _prepared_for(self, state: TrainState) -> Prepared | None:
    """What the previous step prepared, if it was prepared for this very state."""
    p = self._prepared
    if p is not None and all(a is b for a, b in zip(p.key, self._key(state))):
      return p
    return None

  def _inputs(self, state: TrainState):
    """(Δ_k [q, D], c_k, what the previous step prepared for this state or None).

    Δ_k and c_k come from what was prepared, or are computed now.
    """
    p = self._prepared_for(state)
    if p is not None:
      return p.deltas, p.c, p
    return (*self.prepare(state.params, state.opt_state, state.rng, state.step), None)

  def start(self, state: TrainState, u_visuals, u_ids):
    """Starts the step's oracle call; it is under way on return.

    Returns:
      (Δ_k, c_k), which `combine` needs.
    """
    deltas, c_k, p = self._inputs(state)
    if self._layout is None:
      self._layout = parameter_layout(state.params)
    if p is not None and p.anonymized is not None and p.visuals is u_visuals:
      anonymized = p.anonymized
    else:
      anonymized = self.perturb(state.params, deltas, c_k, u_visuals, self._layout)
    # Done = the oracle call is under way; the perturbed anonymizations had the devices (on a
    # CPU: the cores) to themselves.
    jax.block_until_ready(self.send(anonymized, u_ids))
    return deltas, c_k

  def __call__(
    self, state: TrainState, u_visuals, u_ids, p_visuals, p_labels, *, next_visuals=None
  ):
    """Step k: returns (state k + 1, metrics).

    Args:
      state: the step-k state; its updated fields are donated.
      u_visuals, u_ids: the utility batch (uint8 visuals, example ids).
      p_visuals, p_labels: the privacy batch (uint8 visuals, attribute labels).
      next_visuals: optionally the utility visuals of step k + 1. Their perturbed
        anonymizations are then computed with the update, and the next call uses them if it gets
        the returned state and this same array object (it must not be modified in between).
    """
    deltas, c_k = self.start(state, u_visuals, u_ids)
    l_privacy, h, reviewer_vars, reviewer_opt_state, bce = self.privacy(
      state.params, state.reviewer_vars, state.reviewer_opt_state, p_visuals, p_labels
    )
    next_deltas = self.draw_next(state.params, state.rng, state.step)
    answers = self.bridge.receive()
    # `combine` takes and returns only the fields it changes: every array passed to a jitted call
    # costs dispatch time, and this call is on the serial path. The reviewer's new state goes in
    # on the host.
    fields = {f: getattr(state, f) for f in UPDATED_FIELDS}
    args = (fields, deltas, c_k, answers, l_privacy, h, bce)
    if next_visuals is None:
      updated, metrics, next_c = self.combine(*args)
      next_anonymized = None
    else:
      updated, metrics, next_c, next_anonymized = self.combine_perturb(
        *args, next_deltas, next_visuals, self._layout
      )
    new_state = state.replace(
      **updated, reviewer_vars=reviewer_vars, reviewer_opt_state=reviewer_opt_state
    )
    self._prepared = Prepared(
      self._key(new_state), next_deltas, next_c, next_visuals, next_anonymized
    )
    return new_state, metrics

  @property
  def parts(self):
    return (
      self.prepare,
      self.perturb,
      self.send,
      self.privacy,
      self.draw_next,
      self.combine,
      self.combine_perturb,
    )

  def _cache_size(self) -> int:
    """Compilations of the most-compiled part (1 after any number of same-shaped steps)."""
    return max(f._cache_size() for f in self.parts)


@dataclasses.dataclass(frozen=True)
class Prepared:
  """What a step prepares for the next: Δ_{k+1}, c_{k+1} and maybe its anonymizations.

  Attributes:
    key: the fields of the state it was prepared for (compared by identity).
    deltas, c: Δ_{k+1} [q, D] and c_{k+1}.
    visuals: the utility visuals of step k + 1 that `anonymized` was computed from, or None.
    anonymized: their 2q perturbed anonymizations under θ_{k+1} ± c_{k+1} Δ_{k+1}, or None.
  """

  key: tuple
  deltas: Any
  c: Any
  visuals: Any = None
  anonymized: Any = None


def make_train_step(
  config, anonymizer, reviewer, optimizer, bridge: OracleBridge, *, mesh=None
) -> TrainStep:
  """Returns `train_step(state, utility_visuals, utility_ids, privacy_visuals, privacy_labels)`.

  Visuals arrive as uint8 and are scaled to [0, 1] on the device. Each part compiles once. With a
  `mesh` (anonymax.parallel) the batches arrive split over its devices and the state replicated.
  """
  q = int(config.optim.num_samples)
  mask = config.optim.get("perturb", "") or None
  draw, estimate = perturbation_for(config.optim.zo_method)
  privacy_kind = config.privacy_loss
  privacy_scale = float(config.optim.get("privacy_grad_scale", 1.0))
  rev_tx = reviewer_optimizer(config)

  def anonymize(params, x):
    return anonymizer.apply({"params": params}, x)

  def draw_part(params, rng, step):
    """Δ_k [q, D]: q perturbations (Rademacher for SPSA) of θ, from fold_in(key, k)."""
    key = jax.random.fold_in(jax.random.wrap_key_data(rng), step)
    k_delta, _ = jax.random.split(key)
    deltas = jax.vmap(lambda k: draw(k, params, mask=mask))(jax.random.split(k_delta, q))
    return jax.vmap(flat_parameters)(deltas)

  def prepare_part(params, opt_state, rng, step):
    return draw_part(params, rng, step), optimizer.perturbation_scale(opt_state)

  def perturb_part(params, deltas, c_k, u_visuals, layout):
    x_u = u_visuals.astype(jnp.float32) / 255.0
    # 1. The 2q perturbed anonymizations. A vmap over parameter sets would turn every conv into
    # a grouped conv, which XLA:CPU runs several times slower than 2q plain ones; 2q is small
    # and static, so unroll: θ + c_k Δ_i for every i, then θ − c_k Δ_i. Leaves outside the mask
    # (Δ = 0 there) are passed as θ itself, not θ ± c_k·0: the layers before the first perturbed
    # one then see identical inputs in all 2q passes, and XLA computes them once
    # (common-subexpression elimination).
    covered = optim.resolve_mask(mask, params)
    deltas = [unflatten_parameters(d, layout) for d in deltas]
    perturbed = [
      jax.tree.map(
        lambda p, d, m, s=s: p if m is False else p + s * c_k * d, params, deltas[i], covered
      )
      for s in (1.0, -1.0)
      for i in range(q)
    ]
    anonymized = jnp.stack([anonymize(theta, x_u) for theta in perturbed])  # [2q, B, ...]
    flat = anonymized.reshape((2 * q * x_u.shape[0], *anonymized.shape[2:]))
    if mesh is not None:  # one call for the whole batch: gather the devices' shares first
      flat = jax.lax.with_sharding_constraint(flat, parallel.replicated(mesh))
    return flat

  def send_part(anonymized, u_ids):
    # 2. One oracle call for the 2qB anonymized visuals (never the raw ones), answered by the
    #    time `combine` runs.
    return bridge.send(anonymized, jnp.tile(u_ids, 2 * q))  # ready once the call is under way

  def estimate_part(deltas, c_k, sample_losses, status):
    """ĝ_k and L_MLLM from the oracle's 2qB answers (Eq. 7 over the pairs scored on both sides)."""
    batch = sample_losses.shape[0] // (2 * q)
    sample_losses = sample_losses.reshape(2, q, batch)
    ok = (status == STATUS_OK).reshape(2, q, batch)
    pair_ok = ok[0] & ok[1]  # a pair is usable only if both sides were scored
    n_ok = pair_ok.sum(axis=-1)  # [q]
    denom = jnp.maximum(n_ok, 1).astype(jnp.float32)
    l_plus = jnp.where(pair_ok, sample_losses[0], 0.0).sum(-1) / denom  # [q]
    l_minus = jnp.where(pair_ok, sample_losses[1], 0.0).sum(-1) / denom
    usable = (n_ok > 0).astype(jnp.float32)  # [q]
    # Eq. 7 for each perturbation (on flat vectors [q, D]), then the mean over the usable ones.
    estimates = jax.vmap(estimate, in_axes=(0, 0, 0, None))(l_plus, l_minus, deltas, c_k)
    weights = usable / jnp.maximum(usable.sum(), 1.0)
    g_hat = jnp.tensordot(weights.astype(estimates.dtype), estimates, axes=1)
    l_mllm = ((l_plus + l_minus) * 0.5 * usable).sum() / jnp.maximum(usable.sum(), 1.0)
    n_scored = (status == STATUS_OK).sum().astype(jnp.int32)
    n_sent = jnp.asarray(2 * q * batch, jnp.int32)
    return g_hat, l_mllm, usable.sum() > 0, n_ok.sum(), n_sent, n_scored

  def privacy_part(params, reviewer_vars, reviewer_opt_state, p_visuals, p_labels):
    x_p = p_visuals.astype(jnp.float32) / 255.0

    # 3. L_Privacy and its exact gradient h_k through f_P ∘ f_A.
    def privacy_objective(params):
      logits, _ = _apply_reviewer(reviewer, reviewer_vars, anonymize(params, x_p), False)
      return losses.privacy_loss(logits, privacy_kind, labels=p_labels)

    l_privacy, h = jax.value_and_grad(privacy_objective)(params)
    # SPSA estimates carry a norm about √D times that of the gradient they estimate, so the exact
    # privacy gradient is rescaled to a comparable size before the two are combined (config;
    # 1.0 is the paper's Eq. 11 unchanged). The selection i* still uses the raw losses.
    h = flat_parameters(h) * privacy_scale  # flat, as `combine` takes it

    # 5. Reviewer: one BCE step on f_A(x; θ_k) (adversarial alternation).
    anonymized_p = jax.lax.stop_gradient(anonymize(params, x_p))

    def reviewer_objective(rparams):
      variables = {**reviewer_vars, "params": rparams}
      logits, stats = _apply_reviewer(reviewer, variables, anonymized_p, True)
      return losses.reviewer_bce(logits, p_labels), stats

    (bce, stats), rgrads = jax.value_and_grad(reviewer_objective, has_aux=True)(
      reviewer_vars["params"]
    )
    rupdates, new_rev_opt_state = rev_tx.update(rgrads, reviewer_opt_state, reviewer_vars["params"])
    new_reviewer_vars = {
      **reviewer_vars,
      "params": optax.apply_updates(reviewer_vars["params"], rupdates),
    }
    if stats is not None:
      new_reviewer_vars["batch_stats"] = stats
    return l_privacy, h, new_reviewer_vars, new_rev_opt_state, bce

  def combine(fields, deltas, c_k, answers, l_privacy, h, bce):
    """The `UPDATED_FIELDS` of the step-k state → those of step k + 1, the metrics and c_{k+1}."""
    g_hat, l_mllm, any_usable, pairs_scored, n_sent, n_scored = estimate_part(deltas, c_k, *answers)
    # 4. Critical history → scalarization → −a_k (anonymax.optim), on flat vectors (see
    #    `flat_parameters`; `privacy` returns h flat). A step whose oracle call returned nothing
    #    usable leaves the anonymizer and its optimizer unchanged.
    params, unflatten_params = ravel_pytree(fields["params"])

    def update(params, opt_state):
      updates, new_opt_state = optimizer.update(
        g_hat, h, opt_state, params, losses=(l_mllm, l_privacy)
      )
      return optax.apply_updates(params, updates), new_opt_state, updates

    def keep(params, opt_state):
      return params, opt_state, jnp.zeros_like(params)

    # A conditional, not a select: its results are whole arrays. Left to itself, XLA fuses the
    # update's elementwise chain into whatever reads θ_{k+1} (in `combine_perturb`, every
    # GroupNorm scale of the next perturbed passes) and recomputes it per activation element;
    # an optimization barrier does not stop that on XLA:CPU, which expands barriers before fusing.
    new_params, new_opt_state, updates = jax.lax.cond(
      any_usable, update, keep, params, fields["opt_state"]
    )
    new_fields = dict(
      step=fields["step"] + 1,
      params=unflatten_params(new_params),
      opt_state=new_opt_state,
      oracle_samples=fields["oracle_samples"] + n_sent,
      skipped=fields["skipped"] + (n_sent - n_scored),
    )
    metrics = {
      "l_mllm": l_mllm,
      "l_privacy": l_privacy,
      "reviewer_bce": bce,
      "c_k": c_k,
      "pairs_scored": pairs_scored,
      "g_hat_norm": optax.tree.norm(g_hat),
      "privacy_grad_norm": optax.tree.norm(h),
      "update_norm": optax.tree.norm(updates),
      "indicator": new_opt_state.indicator,
      "selected": new_opt_state.selected,
    }
    return new_fields, metrics, optimizer.perturbation_scale(new_opt_state)  # and c_{k+1}

  def combine_perturb(
    fields, deltas, c_k, answers, l_privacy, h, bce, next_deltas, visuals, layout
  ):
    """`combine`, then `perturb` for step k + 1 on `visuals` (its utility batch)."""
    new_fields, metrics, next_c = combine(fields, deltas, c_k, answers, l_privacy, h, bce)
    # θ_{k+1} comes out of `combine`'s conditional as whole arrays, so the passes below read the
    # same values as `perturb` on its own would (a resumed run's first step runs that).
    anonymized = perturb_part(new_fields["params"], next_deltas, next_c, visuals, layout)
    return new_fields, metrics, next_c, anonymized

  return TrainStep(
    prepare=jax.jit(prepare_part),
    perturb=jax.jit(perturb_part, static_argnums=4),
    send=jax.jit(send_part),
    privacy=jax.jit(privacy_part),
    draw_next=jax.jit(lambda params, rng, step: draw_part(params, rng, step + 1)),
    combine=jax.jit(combine, donate_argnums=(0,)),
    combine_perturb=jax.jit(combine_perturb, donate_argnums=(0,), static_argnums=9),
    bridge=bridge,
  )


def make_reviewer_restart(config, reviewer, visual_shape):
  """Re-initialises f_P (fresh weights from fold_in(key, step)), Wu et al. 2020's restarting."""
  rev_tx = reviewer_optimizer(config)

  @jax.jit
  def restart(state: TrainState) -> TrainState:
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step + 1_000_003)
    variables = init_reviewer(reviewer, key, jnp.zeros((1, *visual_shape), jnp.float32))
    return state.replace(
      reviewer_vars=variables, reviewer_opt_state=rev_tx.init(variables["params"])
    )

  return restart


# ----------------------------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------------------------
def privacy_data_config(config):
  """The data config of the privacy examples: `config.privacy_data` when it names a dataset.

  The paper trains on two datasets, e.g. OK-VQA questions for the black box and VISPR images with
  privacy labels for the reviewer; the synthetic benchmark has both in one split, and then
  `config.privacy_data` is absent (or its dataset is empty) and `config.data` serves both.
  """
  p = config.get("privacy_data")
  return p if p is not None and p.get("dataset") else config.data


def has_privacy_data(config) -> bool:
  """Whether the privacy examples come from their own dataset (`config.privacy_data`)."""
  return privacy_data_config(config) is not config.data


def _load_kwargs(d, split: str) -> dict:
  """The keyword arguments of `pipeline.load_split` for the data config `d` and a split."""
  n = d.get("num_train") if split.startswith("train") else d.get("num_test")
  if d.dataset == "synthetic":
    return dict(
      num_examples=n, image_size=d.image_size, clip_length=d.clip_length, seed=d.get("seed", 0)
    )
  # A real dataset: its own options (categories, attributes, split_number, ...) plus the sizes.
  options = d.get("options") or {}
  kwargs = dict(options.to_dict() if hasattr(options, "to_dict") else options)
  kwargs["image_size"] = d.image_size
  if d.get("clip_length"):
    kwargs["clip_length"] = d.clip_length
  if d.get("manual_dir"):
    kwargs["manual_dir"] = d.manual_dir
  if n:
    kwargs["num_examples"] = n
  return kwargs


def load_split(config, split: str, *, privacy: bool = False):
  """The "train" or "test" split of the utility dataset, or of the privacy dataset if `privacy`."""
  d = privacy_data_config(config) if privacy else config.data
  return pipeline.load_split(d.dataset, split, data_dir=d.get("data_dir"), **_load_kwargs(d, split))


def load_data(config):
  """(train split, test split) of the configured (utility) dataset."""
  return load_split(config, "train"), load_split(config, "test")


def load_privacy_data(config, utility_splits=None):
  """(train, test) of the privacy examples; `utility_splits` when they are the same dataset."""
  if not has_privacy_data(config) and utility_splits is not None:
    return utility_splits
  return load_split(config, "train", privacy=True), load_split(config, "test", privacy=True)


def finalize_config(config, privacy_split) -> None:
  """Fields that follow from the data (number of attributes, the privacy ideal point)."""
  num_attributes = int(privacy_split.privacy.shape[1])
  if num_attributes == 0:
    d = privacy_data_config(config)
    raise ValueError(
      f"config.data.dataset={d.dataset!r} has no privacy attributes: set config.privacy_data "
      "to a dataset that has them (e.g. config.privacy_data.dataset='vispr')"
    )
  with config.unlocked():
    config.reviewer.num_classes = num_attributes
    scal = dict(config.optim.scalarization)
    ideal = list(scal.get("ideal", (0.0, 0.0)))
    ideal[1] = float(losses.privacy_ideal(config.privacy_loss))
    scal["ideal"] = tuple(ideal)
    config.optim.scalarization = scal


def train_and_evaluate(config, workdir: str, *, oracle: Oracle | None = None) -> TrainState:
  """Trains (resuming from the latest checkpoint in `workdir`) and returns the final state.

  Args:
    config: an ml_collections config (see configs/synthetic.py).
    workdir: where checkpoints, metrics.jsonl and the saved config go.
    oracle: the black box; built from `config.oracle` when None (tests pass spies here).
  """
  os.makedirs(workdir, exist_ok=True)
  config = config.copy_and_resolve_references()

  # --- Data (training needs no test split): utility examples, and privacy examples (the same
  #     split unless config.privacy_data names a dataset of its own). ---
  train_split = load_split(config, "train")
  privacy_split = (
    load_split(config, "train", privacy=True) if has_privacy_data(config) else train_split
  )
  finalize_config(config, privacy_split)
  # The models are initialised on a privacy example (the reviewer sees those; the anonymizer is
  # convolutional and frame-wise, so its parameters fit images and clips of any size alike).
  visual_shape = privacy_split.visuals.shape[1:]
  num_train = train_split.visuals.shape[0]
  num_privacy = privacy_split.visuals.shape[0]

  # --- Black box. ---
  if oracle is None:
    oracle = make_oracle(config, workdir)
  bridge = OracleBridge(oracle, train_split.queries)

  # --- Models, optimizer, state. ---
  anonymizer, reviewer = build_models(config)
  optimizer = optim.make_optimizer(optimizer_config(config))
  state = create_state(config, anonymizer, reviewer, optimizer, visual_shape)
  # Data parallelism over the devices (one device: no mesh, nothing changes).
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  parallel.check_batch_sizes(
    mesh, batch_size=config.batch_size, privacy_batch_size=config.privacy_batch_size
  )
  if mesh is not None:
    state = jax.device_put(state, parallel.replicated(mesh))
    logging.info("data parallel over %d devices", mesh.devices.size)

  # --- Restore (into the state's own layout: replicated over the mesh, if any). ---
  mgr = checkpoint.manager(workdir)
  restored = checkpoint.restore(mgr, state)
  if restored is not None:
    state, _ = restored
    logging.info("resumed from step %d", int(state.step))
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(checkpoint.scrub_secrets(config.to_dict()), f, indent=2, default=str)

  train_step = make_train_step(config, anonymizer, reviewer, optimizer, bridge, mesh=mesh)
  restart = make_reviewer_restart(config, reviewer, visual_shape)
  # metrics.jsonl, and TensorBoard event files in workdir/tensorboard when tensorboardX is there.
  writer = metric_writers.make_writer(workdir, tensorboard=config.get("tensorboard", "auto"))

  def meta_now(state):
    return {
      "step": int(state.step),
      "oracle_samples": int(state.oracle_samples),
      "skipped": int(state.skipped),
      "oracle": getattr(oracle, "name", type(oracle).__name__),
      "oracle_loss": getattr(oracle, "loss", ""),
      "oracle_stats": _oracle_stats(oracle),
      "config": config.to_dict(),
    }

  total = int(config.total_steps)
  first = int(state.step)
  bar = tqdm(total=total, initial=first, desc="train", dynamic_ncols=True, disable=None)
  t_start = time.perf_counter()

  def batch_at(step):
    """(utility visuals, their example ids, privacy visuals, their labels) of a step."""
    u_idx = pipeline.batch_indices(
      step, num_examples=num_train, batch_size=config.batch_size, seed=config.seed
    )
    p_idx = pipeline.batch_indices(
      step, num_examples=num_privacy, batch_size=config.privacy_batch_size, seed=config.seed + 1
    )
    batch = (
      train_split.visuals[u_idx],
      u_idx.astype(np.int32),
      privacy_split.visuals[p_idx],
      privacy_split.privacy[p_idx],
    )
    if mesh is not None:
      batch = jax.device_put(batch, parallel.batch_sharded(mesh))
    return batch

  try:
    batch = batch_at(first) if first < total else None
    for step in range(first, total):
      if config.reviewer.restart_every and step > 0 and step % config.reviewer.restart_every == 0:
        state = restart(state)
      # The next batch goes in too: the step computes its perturbed anonymizations along with
      # the update (`TrainStep`), and the next call uses them.
      next_batch = batch_at(step + 1) if step + 1 < total else None
      state, metrics = train_step(
        state, *batch, next_visuals=None if next_batch is None else next_batch[0]
      )
      batch = next_batch
      done = step + 1
      bar.update(1)
      if done % config.log_every == 0 or done == total:
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        for k in ("l_mllm", "l_privacy"):
          if not np.isfinite(scalars[k]):
            raise FloatingPointError(
              f"{k} is {scalars[k]} at step {done}: lower config.optim.gains.a"
            )
        samples = int(state.oracle_samples)
        scalars.update(
          oracle_samples=samples,
          calls_per_sample=samples / num_train,
          skipped=int(state.skipped),
          oracle_seconds=bridge.seconds,
          wall_seconds=time.perf_counter() - t_start,
        )
        writer.write(done, scalars)
        bar.set_postfix(
          util=f"{scalars['l_mllm']:.3f}",
          priv=f"{scalars['l_privacy']:.3f}",
          calls=samples,
          per_sample=f"{scalars['calls_per_sample']:.1f}",
        )
      exhausted = bool(getattr(oracle, "exhausted", False))
      if done % config.checkpoint_every == 0 or done == total or exhausted:
        checkpoint.save(mgr, done, state, meta_now(state))
      if exhausted:
        logging.warning("oracle budget reached at step %d: checkpoint written, stopping", done)
        break
  finally:
    # Event files are flushed and their writer thread ended even when a step raises.
    bar.close()
    writer.close()
  return state


def _oracle_stats(oracle) -> dict[str, float]:
  stats = getattr(oracle, "stats", None)
  return stats.as_dict() if hasattr(stats, "as_dict") else {}
