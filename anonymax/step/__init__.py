"""One training step: the state, the reference step (the paper's Eqs. 7–12 in order) and the
pipelined step that training runs (the same arithmetic, the oracle's wait hidden)."""

from anonymax.step.pipelined import PipelinedStep, make_train_step
from anonymax.step.reference import make_reference_step
from anonymax.step.state import (
  TrainState,
  create_state,
  flat_parameters,
  parameter_layout,
  unflatten_parameters,
)

__all__ = [
  "PipelinedStep",
  "TrainState",
  "create_state",
  "flat_parameters",
  "make_reference_step",
  "make_train_step",
  "parameter_layout",
  "unflatten_parameters",
]
