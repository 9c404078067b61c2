"""Loading any dataset's split into memory by name, and drawing reproducible batches.

`load_split("okvqa", ...)` is ``anonymax.data.okvqa.load_split(...)``: every dataset, the
synthetic benchmark included, is a module ``anonymax.data.<dataset>`` with a ``load_split`` that
returns a `Split` (see `anonymax.data.records`); this module only checks the request and
dispatches it.

Batches are a pure function of (seed, step): `batch_indices` walks through one random permutation
of the split per epoch, so a run resumed at step k sees exactly the batches an uninterrupted run
would have seen; the "data position" to checkpoint is the step alone.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re

import numpy as np

from anonymax.data.records import Split, check_split

__all__ = ["Split", "batch_indices", "load_split"]

# Modules of anonymax.data that are not datasets (they define no dataset's load_split).
_NOT_DATASETS = (
  "action_videos",
  "builder",
  "hmdb51_classes",
  "imaging",
  "pa_hmdb51_annotations",
  "pipeline",
  "records",
  "synthetic_generator",
  "synthetic_scenes",
  "video_files",
)


def load_split(dataset: str, split: str, *, data_dir: str | None = None, **kwargs) -> Split:
  """Loads one split of a dataset into memory, building the TFDS dataset first if missing.

  Args:
    dataset: the name of a module ``anonymax.data.<dataset>`` that defines
      ``load_split(split, *, data_dir=None, **options) -> Split``: ``"synthetic"``, ``"okvqa"``,
      ``"vispr"``, ``"ucf101"``, ``"hmdb51"``, ``"pa_hmdb51"``.
    split: ``"train"`` or ``"test"``, optionally sliced as TFDS allows (``"train[:100]"``).
    data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    **kwargs: the dataset's options, the keyword arguments of its ``load_split`` (e.g.
      `anonymax.data.synthetic.load_split`: image_size, clip_length, num_examples, num_train,
      num_test, seed).

  Returns:
    The `Split`.

  Raises:
    ValueError: one line naming the field, for an unknown dataset, a bad split or an option the
      dataset does not know (checked before anything is built).
  """
  check_split(split)
  if (
    not isinstance(dataset, str)
    or not re.fullmatch(r"[a-z][a-z0-9_]*", dataset)
    or dataset in _NOT_DATASETS
  ):
    raise ValueError(f"dataset={dataset!r}: unknown dataset (known: 'synthetic')")
  try:
    module = importlib.import_module(f"anonymax.data.{dataset}")
  except ModuleNotFoundError as e:
    if e.name != f"anonymax.data.{dataset}":
      raise
    raise ValueError(f"dataset={dataset!r}: unknown dataset (known: 'synthetic')") from None
  if not hasattr(module, "load_split"):
    raise ValueError(f"dataset={dataset!r}: anonymax.data.{dataset} defines no load_split")
  known = _options(module.load_split)
  unknown = [] if known is None else sorted(set(kwargs) - set(known))
  if unknown:
    raise ValueError(f"load_split({dataset!r}): unknown option(s) {unknown}; known: {known}")
  return module.load_split(split, data_dir=data_dir, **kwargs)


def _options(load) -> tuple[str, ...] | None:
  """The option names `load` (a dataset's load_split) takes: its keywords but split and data_dir.

  None when it takes **kwargs (then any name is its own to check).
  """
  params = inspect.signature(load).parameters.values()
  if any(p.kind is p.VAR_KEYWORD for p in params):
    return None
  return tuple(
    p.name
    for p in params
    if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("split", "data_dir")
  )


@functools.lru_cache(maxsize=8)
def _permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)
  perm.flags.writeable = False
  return perm


def batch_indices(step: int, *, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """The example indices of batch `step`: a deterministic function of (seed, step).

  Batch k holds positions p = k·B + j (j < B) of an endless stream made of one permutation per
  epoch: index(p) = π_e(p mod N) with e = ⌊p / N⌋ and π_e = permutation seeded by (seed, e).
  Every epoch therefore visits each example exactly once; a batch may straddle two epochs.

  Args:
    step: batch number k ≥ 0 (the data position of a resumed run).
    num_examples: N, the split size.
    batch_size: B.
    seed: non-negative data seed.

  Returns:
    int32 [B] indices in [0, N).
  """
  for field, value, low in (
    ("step", step, 0),
    ("num_examples", num_examples, 1),
    ("batch_size", batch_size, 1),
    ("seed", seed, 0),
  ):
    if int(value) != value or value < low:
      raise ValueError(f"batch_indices: {field}={value!r} must be an integer >= {low}")
  positions = int(step) * int(batch_size) + np.arange(batch_size, dtype=np.int64)
  epochs = positions // num_examples
  out = np.empty(batch_size, np.int32)
  for epoch in np.unique(epochs):
    mask = epochs == epoch
    out[mask] = _permutation(int(seed), int(epoch), int(num_examples))[
      positions[mask] % num_examples
    ]
  return out
