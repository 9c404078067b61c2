"""The reference anonymizers trained beside a run, so its evaluation can say what the method buys.

* ``constant_mask``: the learned input-independent mask (`anonymax.models.ConstantMask`), trained
  with the run's own objective, black box and optimizer; the whole mask is perturbed. It is the
  trivial solution: whatever privacy it reaches, a fixed layout explains.
* ``privacy_only``: the run's own anonymizer with utility weight 0 (`config.objective =
  "privacy_only"`): no black box is called; it shows what privacy costs when utility is ignored.

Each is a run of its own in ``<workdir>/references/<name>`` (its own config.json and checkpoints),
with the config `reference_config` derives from the run's.
"""

from __future__ import annotations

import os

import ml_collections

REFERENCES = ("constant_mask", "privacy_only")


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
    else:
      c.objective = "privacy_only"
  return c


def references_of(config) -> tuple[str, ...]:
  """The reference anonymizers `config.references` names (checked)."""
  names = tuple(config.get("references") or ())
  for name in names:
    if name not in REFERENCES:
      raise ValueError(f"config.references: unknown {name!r}; known: {', '.join(REFERENCES)}")
  return names
