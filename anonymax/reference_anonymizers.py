"""The reference anonymizers trained beside a run, so its evaluation can say what the method buys.

* ``constant_mask``: the learned input-independent mask (`anonymax.models.ConstantMask`), trained
  with the run's own objective, black box and optimizer; the whole mask is perturbed. It is the
  trivial solution: whatever privacy it reaches, a fixed layout explains.
* ``privacy_only``: the run's own anonymizer with utility weight 0 (`config.objective =
  "privacy_only"`): no black box is called; it shows what privacy costs when utility is ignored.
* ``surrogate_model``: the run's own anonymizer trained with exact gradients through a white-box
  utility model fitted to the raw training images (`anonymax.surrogate_utility`; `config.objective
  = "surrogate_model"`, `anonymax.step.white_box`) in the black box's place: the VITA / SPAct
  family of baselines. It calls no black box in training and is evaluated with it like any row.
* ``bdq``: BDQ's encoder (blur, difference, quantisation; Kumawat & Nagahara, ECCV 2022) with its
  parameters trained the same way, through the surrogate: BDQ's own recipe trains the encoder
  against a white-box utility model and an adversary, as here.

For the two surrogate rows h_k is not rescaled (`optim.privacy_grad_scale = 1`): the rescaling
puts the exact privacy gradient on the scale of a zeroth-order estimate, and their utility
gradient is exact too.

Each is a run of its own in ``<workdir>/references/<name>`` (its own config.json and checkpoints),
with the config `reference_config` derives from the run's.
"""

from __future__ import annotations

import os

import ml_collections

REFERENCES = ("constant_mask", "privacy_only", "surrogate_model", "bdq")


def reference_workdir(workdir: str, name: str) -> str:
  """Where reference anonymizer `name` of the run in `workdir` is trained."""
  return os.path.join(workdir, "references", name)


def reference_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The config of reference anonymizer `name` for the run of `config` (a new config).

  Raises:
    ValueError: naming `config.references` for an unknown name.
  """
  if name not in REFERENCES:
    raise ValueError(f"config.references: unknown {name!r}; known: {', '.join(REFERENCES)}")
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.references = ()
    if name == "constant_mask":
      c.anonymizer = ml_collections.ConfigDict(
        {
          "name": "constant_mask",
          "size": int(config.data.image_size),
          "mask_init_logit": float(config.anonymizer.get("mask_init_logit", -3.0)),
        }
      )
      # The mask has S² parameters and none of them is special: perturb them all.
      c.optim.perturb = ""
    elif name == "privacy_only":
      c.objective = "privacy_only"
    else:
      c.objective = "surrogate_model"
      c.optim.privacy_grad_scale = 1.0
      if name == "bdq":
        c.anonymizer = ml_collections.ConfigDict({"name": "bdq"})
        c.optim.perturb = ""
  return c


def references_of(config) -> tuple[str, ...]:
  """The reference anonymizers `config.references` names (checked)."""
  names = tuple(config.get("references") or ())
  for name in names:
    if name not in REFERENCES:
      raise ValueError(f"config.references: unknown {name!r}; known: {', '.join(REFERENCES)}")
  return names
