"""The training step as training runs it: the reference step's arithmetic, the oracle's wait hidden.

`anonymax.step.reference` computes step k in one program whose oracle call waits. Here the same
arithmetic is cut into jitted parts so that nothing waits for the black box:

  * `perturb`: Δ_k (the estimator's `ask`), θ_k ± c_k Δ_k and the 2q perturbed anonymizations;
  * `send`: one ordered `io_callback` that hands the 2qB anonymized visuals to the oracle
    (`OracleBridge.send`) and returns at once;
  * `privacy`: L_Privacy, h_k and the reviewer's BCE step, which need no answer, run on the
    devices while the oracle answers;
  * `combine`: ĝ_k from the answers (`tell`), then Eqs. 8–12 (`optimizer.update`) applied to the
    state (its fields donated). Given the next step's utility visuals, `combine_perturb` does the
    same and then step k + 1's `perturb` in one program.

The serial path, which no oracle latency hides, is `combine`, the next `perturb` and `send`.
`combine_perturb` makes the first two one program: one dispatch instead of two, no idle gap
between them, and the loop's host work runs while the device computes. `send` stays apart with
two operands: a program with a callback always takes JAX's Python dispatch path, whose cost grows
with the number of arguments. No device waits for the oracle (a waiting callback would hold a
GPU's stream and, on several devices, the others' collectives), and the parts never run at the
same time, so multi-device programs cannot interleave their collectives.

Every part is a function of the step-k state and the batches: the anonymizations prepared with
step k's update are those `perturb` would compute for step k + 1, a resumed run repeats its steps
exactly, and the parameters equal the reference step's bit for bit on the CPU (tested).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from anonymax import parallel
from anonymax.online_surrogate import NO_SURROGATE
from anonymax.optim.guided import GuidedAsked
from anonymax.oracles.bridge import OracleBridge
from anonymax.step import parts
from anonymax.step.process_shards import ProcessShards
from anonymax.step.state import TrainState, flat_parameters, step_key

# The fields of the state that `combine` updates; the reviewer's are updated by `privacy`.
UPDATED_FIELDS = ("step", "params", "opt_state", "zo_state", "oracle_samples", "skipped")


@dataclasses.dataclass(frozen=True)
class Prepared:
  """Step k + 1's perturbed anonymizations, computed with step k's update.

  Attributes:
    key: the fields of the state they were computed for (compared by identity).
    visuals: the utility visuals they anonymize (compared by identity).
    anonymized, asked, c: `perturb`'s outputs for that state and those visuals.
  """

  key: tuple
  visuals: Any
  anonymized: Any
  asked: Any
  c: Any


class PipelinedStep:
  """`step(state, u_visuals, u_ids, p_visuals, p_labels, *, next_visuals=None)` → (state, metrics).

  The parts are public attributes (each a jitted function that compiles once); `__call__` runs
  them in order and reuses what the previous call prepared when it was prepared for this very
  state and these very visuals.
  """

  def __init__(
    self,
    perturb,
    send,
    privacy,
    combine,
    combine_perturb,
    bridge: OracleBridge,
    receive=None,
    surrogate=NO_SURROGATE,
  ):
    self.perturb, self.send, self.privacy = perturb, send, privacy
    self.combine, self.combine_perturb = combine, combine_perturb
    self.bridge, self.surrogate = bridge, surrogate
    # The answers of `send`: the bridge's, or with several processes every process's rows.
    self.receive = bridge.receive if receive is None else receive
    self._prepared: Prepared | None = None

  @staticmethod
  def _identity(state: TrainState) -> tuple:
    return (state.params, state.opt_state, state.zo_state, state.rng, state.step)

  def _perturbed(self, state: TrainState, u_visuals):
    """(anonymized, asked, c_k) of step k: prepared by the previous call, or computed now."""
    p = self._prepared
    if (
      p is not None
      and p.visuals is u_visuals
      and all(a is b for a, b in zip(p.key, self._identity(state)))
    ):
      return p.anonymized, p.asked, p.c
    return self.perturb(
      state.params, state.opt_state, state.zo_state, state.rng, state.step, u_visuals
    )

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
    self._prepared, prepared = None, self._perturbed(state, u_visuals)
    anonymized, asked, c_k = prepared
    # Done = the oracle call is under way; the perturbed passes had the devices to themselves.
    jax.block_until_ready(self.send(anonymized, u_ids))
    l_privacy, h, reviewer_vars, reviewer_opt_state, bce = self.privacy(
      state.params, state.reviewer_vars, state.reviewer_opt_state, p_visuals, p_labels
    )
    answers = self.receive()
    # `combine` takes and returns only the fields it changes: every array passed to a jitted
    # call costs dispatch time, and this call is on the serial path.
    fields = {f: getattr(state, f) for f in UPDATED_FIELDS}
    # The perturbed anonymizations go back in only for an online surrogate to learn from.
    seen = anonymized if self.surrogate.enabled else None
    args = (fields, asked, c_k, answers, l_privacy, h, bce, seen)
    if next_visuals is None:
      updated, metrics = self.combine(*args)
    else:
      updated, metrics, *next_prepared = self.combine_perturb(*args, state.rng, next_visuals)
    new_state = state.replace(
      **updated, reviewer_vars=reviewer_vars, reviewer_opt_state=reviewer_opt_state
    )
    if next_visuals is not None:
      self._prepared = Prepared(self._identity(new_state), next_visuals, *next_prepared)
    return new_state, metrics


def make_train_step(
  anonymizer,
  reviewer,
  optimizer,
  reviewer_tx,
  bridge: OracleBridge,
  *,
  privacy_loss: str,
  mesh=None,
  surrogate=NO_SURROGATE,
) -> PipelinedStep:
  """The pipelined step of `anonymax.step.reference.make_reference_step`'s arguments.

  With a `mesh` (anonymax.parallel) the batches arrive split over its devices and the state
  replicated; the perturbed anonymizations are gathered before the one oracle call. When the mesh
  spans several processes, each process scores its own rows instead (`process_shards`).
  """
  estimator = optimizer.estimator
  num_sets = estimator.num_evaluations
  shards = ProcessShards(bridge, mesh, num_sets) if parallel.spans_processes(mesh) else None
  if shards is not None and surrogate.enabled:
    raise ValueError(
      "the online surrogate (optim.guided.source='guide') runs in one process; this mesh spans "
      "several"
    )

  def perturb_part(params, opt_state, zo_state, rng, step, u_visuals):
    c_k = optimizer.perturbation_scale(opt_state)
    x = parts.to_unit(u_visuals)
    guide = surrogate.guide(anonymizer, params, zo_state, x)
    param_sets, asked = estimator.ask(
      step_key(rng, step), params, surrogate.estimator_state(zo_state), scale=c_k, guide=guide
    )
    anonymized = parts.anonymize_all(anonymizer, param_sets, x, stacked=shards is not None)
    if shards is not None:  # one call per process, for its rows: nothing is gathered
      anonymized = shards.layout(anonymized)
    elif mesh is not None:  # one call for the whole batch: gather the devices' shares first
      anonymized = jax.lax.with_sharding_constraint(anonymized, parallel.replicated(mesh))
    return anonymized, asked, c_k

  def send_part(anonymized, u_ids):
    return bridge.send(anonymized, jnp.tile(u_ids, num_sets))  # ready once the call is under way

  def privacy_part(params, reviewer_vars, reviewer_opt_state, p_visuals, p_labels):
    x_p = parts.to_unit(p_visuals)
    l_privacy, h = parts.privacy_value_and_grad(
      anonymizer, reviewer, privacy_loss, params, reviewer_vars, x_p, p_labels
    )
    new_vars, new_opt_state, bce = parts.reviewer_update(
      anonymizer, reviewer, reviewer_tx, params, reviewer_vars, reviewer_opt_state, x_p, p_labels
    )
    return (
      l_privacy,
      flat_parameters(h),
      new_vars,
      new_opt_state,
      bce,
    )  # h flat, as combine takes it

  def combine(fields, asked, c_k, raw_answers, l_privacy, h, bce, anonymized):
    """The `UPDATED_FIELDS` of the step-k state → those of step k + 1, and the metrics
    (`anonymized`: the perturbed anonymizations for the online surrogate, else None)."""
    # Flat [S·B] (several processes hand over [S, B]), set-major either way.
    sample_losses, status = (jnp.reshape(a, (-1,)) for a in raw_answers)
    answers = parts.per_set_losses(sample_losses, status, num_sets, antithetic=estimator.antithetic)
    g_hat_tree, estimator_state = estimator.tell(
      surrogate.estimator_state(fields["zo_state"]), answers.losses, asked
    )
    zo_state, surrogate_fit = surrogate.fit(
      surrogate.with_estimator_state(fields["zo_state"], estimator_state),
      anonymized, sample_losses, status, num_sets, c_k,
    )  # fmt: skip
    g_hat = flat_parameters(g_hat_tree)
    params, unflatten = ravel_pytree(fields["params"])

    def update(params, opt_state, zo_state):
      updates, new_opt_state = optimizer.update(
        g_hat, h, opt_state, params, losses=(answers.l_mllm, l_privacy)
      )
      return optax.apply_updates(params, updates), new_opt_state, zo_state, updates

    def keep(params, opt_state, _):
      return params, opt_state, fields["zo_state"], jnp.zeros_like(params)

    # A conditional, not a select: its results are whole arrays. Left to itself, XLA fuses the
    # update's elementwise chain into whatever reads θ_{k+1} (in `combine_perturb`, every
    # GroupNorm scale of the next perturbed passes) and recomputes it per activation element;
    # an optimization barrier does not stop that on XLA:CPU, which expands barriers before fusing.
    new_params, new_opt_state, new_zo_state, updates = jax.lax.cond(
      answers.any_usable, update, keep, params, fields["opt_state"], zo_state
    )
    new_fields = dict(
      step=fields["step"] + 1,
      params=unflatten(new_params),
      opt_state=new_opt_state,
      zo_state=new_zo_state,
      oracle_samples=fields["oracle_samples"] + answers.sent,
      skipped=fields["skipped"] + (answers.sent - answers.scored),
    )
    scaled_h = h * optimizer.privacy_grad_scale
    metrics = parts.step_metrics(
      answers, l_privacy, bce, c_k, g_hat, scaled_h, updates, new_opt_state
    )
    if surrogate_fit is not None:
      metrics["surrogate_fit"] = surrogate_fit
    if isinstance(asked, GuidedAsked):  # how much the guided estimator trusts its subspace
      metrics["guided_alpha"] = asked.alpha
      metrics["guided_agreement"] = asked.agreement  # ρ̂, the measured share in the subspace
    return new_fields, metrics

  def combine_perturb(
    fields, asked, c_k, raw_answers, l_privacy, h, bce, anonymized, rng, next_visuals
  ):
    """`combine`, then `perturb` for step k + 1 on `next_visuals` (its utility batch)."""
    new_fields, metrics = combine(fields, asked, c_k, raw_answers, l_privacy, h, bce, anonymized)
    # θ_{k+1} comes out of `combine`'s conditional as whole arrays, so the passes below read the
    # same values as `perturb` on its own would (a resumed run's first step runs that).
    prepared = perturb_part(
      new_fields["params"],
      new_fields["opt_state"],
      new_fields["zo_state"],
      rng,
      new_fields["step"],
      next_visuals,
    )
    return new_fields, metrics, *prepared

  return PipelinedStep(
    perturb=jax.jit(perturb_part),
    send=jax.jit(send_part) if shards is None else shards.send,
    privacy=jax.jit(privacy_part),
    combine=jax.jit(combine, donate_argnums=(0,)),
    combine_perturb=jax.jit(combine_perturb, donate_argnums=(0,)),
    bridge=bridge,
    receive=None if shards is None else shards.receive,
    surrogate=surrogate,
  )
