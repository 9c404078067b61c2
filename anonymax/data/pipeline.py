"""Loading dataset splits into memory and drawing reproducible batches.

A split is small enough to hold in host memory (the oracle, not the input pipeline, bounds the
training speed), so `load_split` reads a TFDS split once through `tfds.data_source` (array_record,
random access, no TensorFlow) and returns plain numpy arrays and `Query` objects.

Batches are a pure function of (seed, step): `batch_indices` walks through one random permutation
of the split per epoch, so a run resumed at step k sees exactly the batches an uninterrupted run
would have seen; the "data position" to checkpoint is the step alone.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import re
from collections.abc import Sequence

import numpy as np

from anonymax.oracles.base import Query

SPLIT_PATTERN = re.compile(r"^(train|test)(\[[^\]]*\])?$")
# Modules of anonymax.data that are not datasets.
_NOT_DATASETS = ("pipeline", "synthetic_scenes", "imaging", "video_files", "action_videos")
SYNTHETIC_OPTIONS = ("image_size", "clip_length", "num_examples", "num_train", "num_test", "seed")


@dataclasses.dataclass
class Split:
  """One split of a dataset, in memory.

  Attributes:
    visuals: uint8 [N, H, W, 3] images or uint8 [N, T, H, W, 3] clips.
    privacy: float32 [N, P] multi-hot privacy attributes (order: `attribute_names`).
    queries: N `Query` objects (prompt, reference answers, choices).
    labels: int32 [N] class ids into `class_names` (the action), or -1 where there is none.
    attribute_names: the P privacy attribute names.
    class_names: the class names that `labels` index.
  """

  visuals: np.ndarray
  privacy: np.ndarray
  queries: list[Query]
  labels: np.ndarray
  attribute_names: tuple[str, ...]
  class_names: tuple[str, ...]

  def __post_init__(self):
    n = self.visuals.shape[0]
    if self.visuals.dtype != np.uint8 or self.visuals.ndim not in (4, 5):
      raise ValueError(
        f"Split.visuals: expected uint8 [N,H,W,3] or [N,T,H,W,3], got {self.visuals.dtype} "
        f"{self.visuals.shape}"
      )
    if self.privacy.shape != (n, len(self.attribute_names)):
      raise ValueError(
        f"Split.privacy: expected shape {(n, len(self.attribute_names))}, got {self.privacy.shape}"
      )
    if len(self.queries) != n or self.labels.shape != (n,):
      raise ValueError(
        f"Split: {n} visuals but {len(self.queries)} queries and labels {self.labels.shape}"
      )

  def __len__(self) -> int:
    return self.visuals.shape[0]

  @property
  def is_video(self) -> bool:
    return self.visuals.ndim == 5

  def subset(self, indices: Sequence[int] | np.ndarray) -> Split:
    """The examples at `indices` (e.g. one batch from `batch_indices`), as a new Split."""
    idx = np.asarray(indices, np.int64)
    return Split(
      visuals=self.visuals[idx],
      privacy=self.privacy[idx],
      queries=[self.queries[i] for i in idx],
      labels=self.labels[idx],
      attribute_names=self.attribute_names,
      class_names=self.class_names,
    )


def load_split(dataset: str, split: str, *, data_dir: str | None = None, **kwargs) -> Split:
  """Loads one split of a dataset into memory, building the TFDS dataset first if missing.

  Args:
    dataset: ``"synthetic"``, or the name of a module ``anonymax.data.<dataset>`` that defines
      ``load_split(split, *, data_dir=None, **kwargs) -> Split``.
    split: ``"train"`` or ``"test"``, optionally sliced as TFDS allows (``"train[:100]"``).
    data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    **kwargs: dataset options. ``"synthetic"``: image_size (64), clip_length (0 = images),
      num_examples (the size of the requested split; only that split is built), or num_train
      and num_test (both splits built together; default 4000 and 1000), seed (0). A split's
      content depends only on (seed, image_size, clip_length) and its size, never on the other
      split's size.

  Returns:
    The `Split`.
  """
  if not isinstance(split, str) or not SPLIT_PATTERN.match(split):
    raise ValueError(
      f"split={split!r}: must be 'train' or 'test', optionally sliced (e.g. 'train[:100]')"
    )
  if dataset == "synthetic":
    unknown = sorted(set(kwargs) - set(SYNTHETIC_OPTIONS))
    if unknown:
      raise ValueError(
        f"load_split('synthetic'): unknown option(s) {unknown}; known: {SYNTHETIC_OPTIONS}"
      )
    return _load_synthetic(split, data_dir=data_dir, **kwargs)
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
  return module.load_split(split, data_dir=data_dir, **kwargs)


def _load_synthetic(
  split: str,
  *,
  data_dir: str | None = None,
  image_size: int = 64,
  clip_length: int = 0,
  num_examples: int | None = None,
  num_train: int | None = None,
  num_test: int | None = None,
  seed: int = 0,
) -> Split:
  """The synthetic benchmark's split (see `load_split`)."""
  # Imported here: TFDS takes a second to import and only this dataset needs it at load time.
  import tensorflow_datasets as tfds

  from anonymax.data import synthetic

  base = split.split("[")[0]
  if num_examples is not None:
    if num_train is not None or num_test is not None:
      raise ValueError("num_examples: give either num_examples or num_train/num_test, not both")
    if int(num_examples) != num_examples or num_examples < 1:
      raise ValueError(f"num_examples={num_examples!r}: must be an integer >= 1")
    # Build the requested split alone (the other one is left empty).
    num_train, num_test = (num_examples, 0) if base == "train" else (0, num_examples)
  else:
    num_train = 4000 if num_train is None else num_train
    num_test = 1000 if num_test is None else num_test
  if (num_train if base == "train" else num_test) == 0:
    raise ValueError(f"num_{base}=0: split {split!r} would be empty")
  config = synthetic.make_config(
    image_size=image_size,
    clip_length=clip_length,
    num_train=num_train,
    num_test=num_test,
    seed=seed,
  )
  source = tfds.data_source(
    synthetic.AnonymaxSynthetic.name,
    split=split,
    data_dir=data_dir,
    builder_kwargs={"config": config, "file_format": "array_record"},
    download=True,
  )
  records = source.__getitems__(list(range(len(source)))) if len(source) else []
  key = "clip" if clip_length else "image"
  shape = (clip_length, image_size, image_size, 3) if clip_length else (image_size,) * 2 + (3,)
  visuals = np.stack([r[key] for r in records]) if records else np.zeros((0, *shape), np.uint8)
  privacy = np.array([r["privacy"] for r in records], np.float32).reshape(
    -1, len(synthetic.PRIVACY_ATTRIBUTES)
  )
  labels = np.array([r["action"] for r in records], np.int32).reshape(-1)
  queries = []
  for r in records:
    if clip_length:
      name = synthetic.ACTIONS[int(r["action"])]
      queries.append(Query(synthetic.ACTION_PROMPT, (name,), synthetic.ACTIONS))
    else:
      qtype = text(r["question_type"])
      queries.append(
        Query(
          text(r["question"]),
          tuple(text(a) for a in r["answers"]),
          synthetic.CHOICES[qtype],
        )
      )
  return Split(
    visuals=visuals,
    privacy=privacy,
    queries=queries,
    labels=labels,
    attribute_names=synthetic.PRIVACY_ATTRIBUTES,
    class_names=synthetic.ACTIONS,
  )


def text(value) -> str:
  """A string feature read back from TFDS (bytes or str) as str."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_records(
  name: str,
  config,
  split: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  num_examples: int | None = None,
) -> list[dict]:
  """The first `num_examples` records (all if None) of `split` of TFDS dataset `name`.

  Builds `config` first if needed, reading the user's files from `manual_dir` (default: TFDS's
  <data_dir>/downloads/manual). The split may be sliced ("train[:100]").

  Raises:
    ValueError: naming the field, for a bad split or num_examples.
  """
  import tensorflow_datasets as tfds

  if not isinstance(split, str) or not SPLIT_PATTERN.match(split):
    raise ValueError(
      f"split={split!r}: must be 'train' or 'test', optionally sliced (e.g. 'train[:100]')"
    )
  if num_examples is not None and (
    isinstance(num_examples, bool) or int(num_examples) != num_examples or num_examples < 1
  ):
    raise ValueError(f"num_examples={num_examples!r}: must be an integer >= 1")
  download_config = tfds.download.DownloadConfig(
    manual_dir=None if manual_dir is None else os.fspath(manual_dir)
  )
  source = tfds.data_source(
    name,
    split=split,
    data_dir=data_dir,
    builder_kwargs={"config": config, "file_format": "array_record"},
    download=True,
    download_and_prepare_kwargs={"download_config": download_config},
  )
  n = len(source) if num_examples is None else min(int(num_examples), len(source))
  return source.__getitems__(list(range(n))) if n else []


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
