"""Everything a run needs, built from its config in one call: `build(config)`.

  >>> exp = experiment.build(config, workdir=W)       # data, derived config, models, optimizer
  >>> state = exp.init_state()
  >>> step = exp.train_step()                          # the pipelined step, on exp.oracle
  >>> state, metrics = step(state, *exp.batch(0), next_visuals=exp.batch(1)[0])

Training, evaluation, the benchmarks and the tests all start here, so a run is set up one way.
The utility examples come from `config.data`; the privacy examples from `config.privacy_data`
when it names a dataset of its own (the paper's two-dataset protocols, e.g. OK-VQA + VISPR), else
from the same split.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import ml_collections
import numpy as np
import optax

from anonymax import anonymizer as anonymizer_lib
from anonymax import black_boxes, models, optim, parallel, run_config, surrogate_utility
from anonymax import online_surrogate as online_surrogate_lib
from anonymax.data import pipeline
from anonymax.data.pipeline import Split
from anonymax.oracles.base import Oracle
from anonymax.oracles.bridge import OracleBridge
from anonymax.step import privacy_only, reference, white_box
from anonymax.step import state as state_lib
from anonymax.step.pipelined import PipelinedStep, make_train_step

# What an anonymizer is trained for (`config.objective`): the paper's two objectives; privacy
# alone (utility weight 0: no black box at all; a reference row of the evaluation); or both
# objectives with a white-box surrogate of the utility trained on raw images in the black box's
# place (the surrogate-model baseline rows; `anonymax.step.white_box`); or, as a diagnostic
# only the reference black box allows, both objectives with the black box's own exact gradient
# ("exact_utility": what the method would reach if its utility estimate were exact).
OBJECTIVES = ("utility_and_privacy", "privacy_only", "surrogate_model", "exact_utility")


def needs_oracle(config) -> bool:
  """Whether training `config` calls the black box (only the paper's objective does)."""
  return config.get("objective", OBJECTIVES[0]) == "utility_and_privacy"


def privacy_data_config(config) -> ml_collections.ConfigDict:
  """The data config of the privacy examples: `config.privacy_data` when it names a dataset."""
  p = config.get("privacy_data")
  return p if p is not None and p.get("dataset") else config.data


def has_privacy_data(config) -> bool:
  """Whether the privacy examples come from their own dataset (`config.privacy_data`)."""
  return privacy_data_config(config) is not config.data


def loader_options(data_config, split: str) -> dict:
  """The keyword arguments of `pipeline.load_split` for a data config and a split."""
  d = data_config
  base = split.split("[")[0]
  n = d.get({"train": "num_train", "validation": "num_validation"}.get(base, "num_test"))
  if d.dataset == "synthetic":
    # A data section without `scenes` was written before scenes v2 existed: it means v1.
    return dict(
      num_examples=n,
      image_size=d.image_size,
      clip_length=d.clip_length,
      seed=d.get("seed", 0),
      scenes=d.get("scenes", "v1"),
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


def load_split(config, split: str, *, privacy: bool = False) -> Split:
  """A split ("train", "test", sliced as TFDS allows) of the utility or the privacy dataset."""
  d = privacy_data_config(config) if privacy else config.data
  return pipeline.load_split(
    d.dataset, split, data_dir=d.get("data_dir"), **loader_options(d, split)
  )


def reviewer_optimizer(config) -> optax.GradientTransformation:
  """The reviewer's optimizer: Adam at `config.reviewer.learning_rate`."""
  return optax.adam(config.reviewer.learning_rate)


def build_reviewer(config):
  """f_P: the classifier named by `config.reviewer` (derived: `num_classes` is set)."""
  r = config.reviewer
  return models.get_model(r.name, num_classes=r.num_classes, **r.get("kwargs", {}))


@dataclasses.dataclass
class Experiment:
  """A run's pieces; see `build`.

  Attributes:
    config: the run's config, derived fields filled (what W/config.json holds).
    utility: the utility training split (visuals + queries for the black box).
    privacy: the privacy training split (visuals + attribute labels); `utility` itself when the
      run has one dataset.
    anonymizer, reviewer: the modules f_A and f_P.
    optimizer: the anonymizer's `optim.MultiObjectiveOptimizer` (its `estimator` asks/tells).
    reviewer_tx: the reviewer's optax optimizer.
    mesh: the data-parallel mesh, or None on one device.
    workdir: where the oracle's cache and usage files go (None: nowhere).
    given_oracle: the black box passed to `build`, if any.
    online_surrogate: the learned model of the black box that guides the guided estimator
      (`anonymax.online_surrogate`; NO_SURROGATE unless optim.guided.source is "guide").
  """

  config: ml_collections.ConfigDict
  utility: Split
  privacy: Split
  anonymizer: object
  reviewer: object
  optimizer: optim.MultiObjectiveOptimizer
  reviewer_tx: optax.GradientTransformation
  mesh: object = None
  workdir: str | None = None
  given_oracle: Oracle | None = None
  online_surrogate: object = online_surrogate_lib.NO_SURROGATE

  @property
  def needs_oracle(self) -> bool:
    """Whether training calls the black box (not for the privacy-only and surrogate rows)."""
    return needs_oracle(self.config)

  @functools.cached_property
  def surrogate(self) -> surrogate_utility.SurrogateUtility:
    """The white-box utility model fitted to the utility split's raw visuals (fitted on first
    use; kept in `config.surrogate.cache_dir`, else the workdir)."""
    cache_dir = (self.config.get("surrogate") or {}).get("cache_dir") or self.workdir
    return surrogate_utility.fit(
      self.utility, surrogate_utility.settings(self.config), cache_dir=cache_dir
    )

  @functools.cached_property
  def exact_utility(self) -> white_box.ExactUtility:
    """The reference black box's own differentiable loss on the utility split's queries."""
    nll_of = getattr(self.oracle, "differentiable_nll", None)
    if nll_of is None:
      raise ValueError(
        f"config.objective='exact_utility' needs the reference black box (config.oracle.kind="
        f"'reference'), the only one with an exact gradient; this run's is {self.oracle.name!r}"
      )
    return white_box.ExactUtility(nll_of(self.utility.queries))

  @functools.cached_property
  def oracle(self) -> Oracle:
    """The black box: the one passed to `build`, else `config.oracle`'s (built on first use)."""
    if self.given_oracle is not None:
      return self.given_oracle
    return black_boxes.make_oracle(self.config, self.workdir)

  @property
  def visual_shape(self) -> tuple[int, ...]:
    """The shape of one visual the models are initialised on (a privacy example's)."""
    return tuple(self.privacy.visuals.shape[1:])

  def init_state(self) -> state_lib.TrainState:
    """The fresh state of `config.seed` (replicated over the mesh, if any)."""
    state = state_lib.create_state(
      self.config.seed,
      self.anonymizer,
      self.reviewer,
      self.optimizer,
      self.reviewer_tx,
      self.visual_shape,
      surrogate=self.online_surrogate,
    )
    return state if self.mesh is None else parallel.replicate(state, self.mesh)

  def abstract_state(self):
    """The state's structure, shapes and layout, without computing it (for restoring)."""
    return jax.eval_shape(self.init_state)

  def batch(self, step: int):
    """(utility visuals, their example ids, privacy visuals, their labels) of step `step`.

    Batch k is a function of (seed, k) alone (`pipeline.batch_indices`), so a resumed run sees
    the batches an uninterrupted one would, whatever the number of devices or processes. With a
    mesh the batches are split over its devices: each process reads only its own rows
    (`parallel.process_rows`) and places them on its devices (`parallel.global_batch`).
    """
    c = self.config
    u_idx = pipeline.batch_indices(
      step, num_examples=len(self.utility), batch_size=c.batch_size, seed=c.seed
    )
    p_idx = pipeline.batch_indices(
      step, num_examples=len(self.privacy), batch_size=c.privacy_batch_size, seed=c.seed + 1
    )
    u_idx = u_idx[parallel.process_rows(self.mesh, c.batch_size)]
    p_idx = p_idx[parallel.process_rows(self.mesh, c.privacy_batch_size)]
    batch = (
      self.utility.visuals[u_idx],
      u_idx.astype(np.int32),
      self.privacy.visuals[p_idx],
      self.privacy.privacy[p_idx],
    )
    if self.mesh is None:
      return batch
    sizes = (c.batch_size,) * 2 + (c.privacy_batch_size,) * 2
    return parallel.global_batch(self.mesh, batch, sizes)

  @functools.cached_property
  def bridge(self) -> OracleBridge:
    """The oracle, callable from jitted code, for the utility split's queries."""
    return OracleBridge(self.oracle, self.utility.queries)

  def _step_args(self):
    return (self.anonymizer, self.reviewer, self.optimizer, self.reviewer_tx, self.bridge)

  def train_step(self) -> PipelinedStep:
    """The step that training runs: `anonymax.step.pipelined`'s, or for a privacy-only
    anonymizer `anonymax.step.privacy_only`'s and for a surrogate-model row
    `anonymax.step.white_box`'s (neither builds an oracle)."""
    objective = self.config.get("objective")
    if objective in ("surrogate_model", "exact_utility"):
      return white_box.make_white_box_step(
        self.anonymizer,
        self.reviewer,
        self.optimizer,
        self.reviewer_tx,
        self.surrogate if objective == "surrogate_model" else self.exact_utility,
        privacy_loss=self.config.privacy_loss,
        utility_ideal=float(self.config.optim.scalarization.ideal[0]),
      )
    if not self.needs_oracle:
      return privacy_only.make_privacy_only_step(
        self.anonymizer,
        self.reviewer,
        self.optimizer,
        self.reviewer_tx,
        privacy_loss=self.config.privacy_loss,
      )
    return make_train_step(
      *self._step_args(),
      privacy_loss=self.config.privacy_loss,
      mesh=self.mesh,
      surrogate=self.online_surrogate,
    )

  def reference_step(self):
    """The paper's step in one program (`anonymax.step.reference`; one device)."""
    return reference.make_reference_step(
      *self._step_args(), privacy_loss=self.config.privacy_loss, surrogate=self.online_surrogate
    )

  def reviewer_restart(self):
    """A jitted `state -> state` re-initialising f_P from fold_in(key, step) (Wu et al. 2020)."""
    sample = jax.numpy.zeros((1, *self.visual_shape), jax.numpy.float32)

    @jax.jit
    def restart(state: state_lib.TrainState) -> state_lib.TrainState:
      key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step + 1_000_003)
      variables = state_lib.init_reviewer(self.reviewer, key, sample)
      return state.replace(
        reviewer_vars=variables, reviewer_opt_state=self.reviewer_tx.init(variables["params"])
      )

    return restart


def build(
  config: ml_collections.ConfigDict, *, workdir: str | None = None, oracle: Oracle | None = None
) -> Experiment:
  """Loads the training data and builds every piece of a run from `config`.

  Args:
    config: a config file's config (derived fields may be None) or a saved one.
    workdir: the run's directory (the oracle's cache and usage files go there).
    oracle: the black box to use instead of `config.oracle`'s (tests pass spies here).

  Returns:
    The `Experiment`; its `config` has the derived fields filled (`run_config.derive`).

  Raises:
    ValueError: one line naming a config field that is wrong or contradicts the data.
  """
  config = config.copy_and_resolve_references()
  utility = load_split(config, "train")
  privacy = load_split(config, "train", privacy=True) if has_privacy_data(config) else utility
  config = run_config.derive(config, num_attributes=int(privacy.privacy.shape[1]))
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  parallel.check_batch_sizes(
    mesh, batch_size=config.batch_size, privacy_batch_size=config.privacy_batch_size
  )
  objective = config.get("objective", OBJECTIVES[0])
  if objective not in OBJECTIVES:
    raise ValueError(f"config.objective={objective!r}: must be one of {', '.join(OBJECTIVES)}")
  if oracle is not None and not isinstance(oracle, Oracle):
    raise TypeError(f"oracle: expected an anonymax.oracles.Oracle, got {type(oracle).__name__}")
  return Experiment(
    config=config,
    utility=utility,
    privacy=privacy,
    anonymizer=anonymizer_lib.build(anonymizer_lib.model_config(config)),
    reviewer=build_reviewer(config),
    optimizer=optim.make_optimizer(config.optim),
    reviewer_tx=reviewer_optimizer(config),
    mesh=mesh,
    workdir=workdir,
    given_oracle=oracle,
    online_surrogate=online_surrogate_lib.from_config(config),
  )
