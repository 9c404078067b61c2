"""What every dataset module shares: the in-memory `Split` and reading a built TFDS split.

A split is small enough to hold in host memory (the oracle, not the input pipeline, bounds the
training speed), so a dataset's ``load_split`` reads its TFDS split once through
`tfds.data_source` (array_record, random access, no TensorFlow; `read_records`) and returns a
`Split` of plain numpy arrays and `Query` objects.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np

from anonymax.types import Query

__all__ = ["SPLIT_PATTERN", "Split", "check_split", "read_records", "text"]

# "train", "validation" or "test", optionally sliced as TFDS allows ("train[:100]", "test[10%:]").
# Most datasets have no validation split; asking one for it is an error of its TFDS build.
SPLIT_PATTERN = re.compile(r"^(train|validation|test)(\[[^\]]*\])?$")


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
    question_types: the type of each example's question (N names), where the dataset has them
      (the synthetic scenes v2), else None.
    regions: ground-truth boxes, where the dataset has them (the synthetic scenes v2), else None:
      ``"face"`` and ``"person"`` float32 [N, K, 4] boxes (ymin, xmin, ymax, xmax in fractions of
      the image) of up to K people and ``"valid"`` bool [N, K] (which of them are present).
  """

  visuals: np.ndarray
  privacy: np.ndarray
  queries: list[Query]
  labels: np.ndarray
  attribute_names: tuple[str, ...]
  class_names: tuple[str, ...]
  question_types: tuple[str, ...] | None = None
  regions: dict[str, np.ndarray] | None = None

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
    if self.question_types is not None and len(self.question_types) != n:
      raise ValueError(f"Split.question_types: {n} visuals but {len(self.question_types)} types")
    if self.regions is not None:
      self._check_regions(n)

  def _check_regions(self, n: int) -> None:
    r = self.regions
    if not isinstance(r, dict) or set(r) != {"face", "person", "valid"}:
      keys = sorted(r) if isinstance(r, dict) else type(r).__name__
      raise ValueError(f"Split.regions: expected keys face, person, valid; got {keys}")
    valid = np.asarray(r["valid"])
    if valid.dtype != np.bool_ or valid.ndim != 2 or valid.shape[0] != n:
      raise ValueError(
        f"Split.regions['valid']: expected bool [{n}, K], got {valid.dtype} {valid.shape}"
      )
    for key in ("face", "person"):
      box = np.asarray(r[key])
      if box.dtype != np.float32 or box.shape != (*valid.shape, 4):
        raise ValueError(
          f"Split.regions[{key!r}]: expected float32 {(*valid.shape, 4)}, got {box.dtype} {box.shape}"
        )

  def __len__(self) -> int:
    return self.visuals.shape[0]

  @property
  def is_video(self) -> bool:
    return self.visuals.ndim == 5

  def subset(self, indices: Sequence[int] | np.ndarray) -> Split:
    """The examples at `indices` (e.g. one batch from `pipeline.batch_indices`), as a new Split."""
    idx = np.asarray(indices, np.int64)
    return Split(
      visuals=self.visuals[idx],
      privacy=self.privacy[idx],
      queries=[self.queries[i] for i in idx],
      labels=self.labels[idx],
      attribute_names=self.attribute_names,
      class_names=self.class_names,
      question_types=(
        None if self.question_types is None else tuple(self.question_types[i] for i in idx)
      ),
      regions=None if self.regions is None else {k: v[idx] for k, v in self.regions.items()},
    )


def check_split(split) -> str:
  """`split` if it matches `SPLIT_PATTERN`; otherwise a ValueError naming the field."""
  if not isinstance(split, str) or not SPLIT_PATTERN.match(split):
    raise ValueError(
      f"split={split!r}: must be 'train', 'validation' or 'test', optionally sliced "
      "(e.g. 'train[:100]')"
    )
  return split


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
  # Imported here: TFDS takes a second to import and only loading needs it.
  import tensorflow_datasets as tfds

  check_split(split)
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
