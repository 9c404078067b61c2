"""Where scalar metrics go: JSON lines always, TensorBoard event files when tensorboardX is there.

`workdir/metrics.jsonl` gets one `{"step": k, name: value, ...}` object per logged step (appended
across resumes), which is what the tests and the README's figures read. With `tensorboardX`
installed (`pip install 'anonymax[tb]'`), the same scalars are also written as event files under
`workdir/tensorboard/`, so `tensorboard --logdir WORKDIR` plots the run while it trains.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Mapping


class JsonlWriter:
  """Scalars as JSON lines in `workdir/metrics.jsonl`."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    # json writes NaN/inf as bare tokens that strict readers refuse; a scalar that is not
    # finite is logged as null.
    row = {k: (v if math.isfinite(v) else None) for k, v in scalars.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": int(step), **row}) + "\n")

  def close(self) -> None:
    pass


class TensorBoardWriter:
  """Scalars as TensorBoard event files in `workdir/tensorboard/` (needs tensorboardX)."""

  def __init__(self, workdir: str, prefix: str = "train"):
    from tensorboardX import SummaryWriter  # optional dependency: the `tb` extra

    self.prefix = prefix
    self._writer = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    for name, value in scalars.items():
      self._writer.add_scalar(f"{self.prefix}/{name}", float(value), int(step))
    # Flushed at every logged step, so a killed run keeps what it logged and a live
    # TensorBoard sees it at once.
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class MultiWriter:
  """Writes to each of `writers`."""

  def __init__(self, writers):
    self.writers = list(writers)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    for w in self.writers:
      w.write(step, scalars)

  def close(self) -> None:
    for w in self.writers:
      w.close()


def tensorboard_available() -> bool:
  return importlib.util.find_spec("tensorboardX") is not None


_TENSORBOARD_MODES = {
  "auto": "auto",
  **dict.fromkeys(("true", "1", "yes", "on"), "on"),
  **dict.fromkeys(("false", "0", "no", "off"), "off"),
}


def _tensorboard_mode(value: str | bool) -> str:
  """ "auto", "on" or "off" from a bool or a string (`--config.tensorboard=...` gives strings)."""
  mode = _TENSORBOARD_MODES.get(str(value).strip().lower())
  if mode is None:
    raise ValueError(f"config.tensorboard must be 'auto', true or false, got {value!r}")
  return mode


def make_writer(
  workdir: str, *, tensorboard: str | bool = "auto", jsonl: bool = True, prefix: str = "train"
) -> MultiWriter:
  """`metrics.jsonl` (if `jsonl`) plus TensorBoard scalars named `prefix/<name>`.

  `tensorboard`: "auto" (iff tensorboardX is installed), true (required: a clear error without
  it) or false; strings from `--config.tensorboard=...` are accepted too.
  """
  mode = _tensorboard_mode(tensorboard)
  if mode == "on" and not tensorboard_available():
    raise ImportError(
      "config.tensorboard=true needs tensorboardX: pip install 'anonymax[tb]' "
      "(or set config.tensorboard=auto)"
    )
  writers = [JsonlWriter(workdir)] if jsonl else []
  if mode == "on" or (mode == "auto" and tensorboard_available()):
    writers.append(TensorBoardWriter(workdir, prefix=prefix))
  return MultiWriter(writers)
