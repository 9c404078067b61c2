"""anonymax.optim: the paper's black-box optimizer as composable optax transforms.

* :mod:`~anonymax.optim.estimators`: the zeroth-order estimators (SPSA, SPSA-GC, ES) in ask/tell
  form (the interface: :mod:`~anonymax.optim.ask_tell`), chosen by name with :func:`zo_estimator`,
  which also names CMA-ES (:mod:`~anonymax.optim.cma_es`, evosax), REINFORCE
  (:mod:`~anonymax.optim.reinforce`) and the guided estimator (:mod:`~anonymax.optim.guided`).
* :mod:`~anonymax.optim.gradients`: one-call estimates of a traceable loss on top of them.
* :mod:`~anonymax.optim.spsa`: SPSA perturbations, estimates (Eq. 7) and Spall's gains.
* :mod:`~anonymax.optim.critical_history`: critical-history direction and step size (Eqs. 8-10).
* :mod:`~anonymax.optim.scalarization`: weighted sum, (augmented) Tchebycheff and smooth
  Tchebycheff (Eqs. 4-6, 11).
* :mod:`~anonymax.optim.spsa_gc`, :mod:`~anonymax.optim.es`: the SPSA-GC and ES baselines.
* :mod:`~anonymax.optim.factory`: the whole optimizer from a config (Eq. 12), including the one
  table that maps ``zo_method`` to its estimator and transform.
"""

from anonymax.optim.cma_es import cma_es_estimator
from anonymax.optim.critical_history import (
  CriticalHistoryState,
  critical_history,
  history_mean,
  status_indicator,
)
from anonymax.optim.es import centered_ranks, normal_like
from anonymax.optim.estimators import (
  ANTITHETIC_ESTIMATORS,
  ZO_ESTIMATORS,
  ZOAsked,
  ZOEstimator,
  zo_estimator,
)
from anonymax.optim.factory import (
  DEFAULT_CONFIG,
  ZO_METHODS,
  MultiObjectiveOptimizer,
  MultiObjectiveState,
  learning_rate_schedule,
  make_optimizer,
  perturbation_schedule,
  resolve_config,
)
from anonymax.optim.gradients import es_gradient, spsa_gradient
from anonymax.optim.guided import GuidedState, guided_estimator
from anonymax.optim.masks import apply_mask, resolve_mask
from anonymax.optim.reinforce import ReinforceState, reinforce_estimator
from anonymax.optim.scalarization import (
  SmoothTchebycheffState,
  TchebycheffState,
  smooth_tchebycheff,
  tchebycheff,
  weighted_sum,
)
from anonymax.optim.spsa import (
  count_evaluations,
  perturb,
  rademacher_like,
  spall_learning_rate,
  spall_perturbation,
  spsa_estimate,
)
from anonymax.optim.spsa_gc import (
  SpsaGcState,
  blackvip_learning_rate,
  blackvip_perturbation,
  spsa_gc,
  uniform_rademacher_like,
)

__all__ = [
  "ANTITHETIC_ESTIMATORS",
  "DEFAULT_CONFIG",
  "GuidedState",
  "CriticalHistoryState",
  "MultiObjectiveOptimizer",
  "MultiObjectiveState",
  "ReinforceState",
  "SmoothTchebycheffState",
  "SpsaGcState",
  "TchebycheffState",
  "ZOAsked",
  "ZOEstimator",
  "ZO_ESTIMATORS",
  "ZO_METHODS",
  "apply_mask",
  "blackvip_learning_rate",
  "blackvip_perturbation",
  "centered_ranks",
  "cma_es_estimator",
  "count_evaluations",
  "critical_history",
  "es_gradient",
  "guided_estimator",
  "history_mean",
  "learning_rate_schedule",
  "make_optimizer",
  "normal_like",
  "perturb",
  "perturbation_schedule",
  "rademacher_like",
  "reinforce_estimator",
  "resolve_config",
  "resolve_mask",
  "smooth_tchebycheff",
  "spall_learning_rate",
  "spall_perturbation",
  "spsa_estimate",
  "spsa_gc",
  "spsa_gradient",
  "status_indicator",
  "tchebycheff",
  "uniform_rademacher_like",
  "weighted_sum",
  "zo_estimator",
]
