"""Tests for anonymax.metric_writers: metrics.jsonl and TensorBoard event files."""

from __future__ import annotations

import glob
import json
import math
import os
import struct

import pytest

from anonymax import metric_writers


def read_tensorboard_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} from the TFRecord event files under `logdir`.

  A TFRecord is: uint64 length, uint32 masked CRC of the length, the bytes, uint32 masked CRC of
  the bytes; each record is a serialized `Event` proto.
  """
  from tensorboardX.proto import event_pb2

  out: dict[str, list[tuple[int, float]]] = {}
  files = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
  assert files, f"no event files in {logdir}"
  for path in files:
    with open(path, "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos : pos + 8])
      record = data[pos + 12 : pos + 12 + length]
      pos += 12 + length + 4
      event = event_pb2.Event.FromString(record)
      for value in event.summary.value:
        out.setdefault(value.tag, []).append((event.step, value.simple_value))
  return out


def test_jsonl_appends_rows_and_writes_non_finite_as_null(tmp_path):
  w = metric_writers.JsonlWriter(str(tmp_path))
  w.write(2, {"a": 1.5, "b": float("nan")})
  metric_writers.JsonlWriter(str(tmp_path)).write(4, {"a": -2.0, "b": float("inf")})  # a resume
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert rows == [{"step": 2, "a": 1.5, "b": None}, {"step": 4, "a": -2.0, "b": None}]


def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path):
  pytest.importorskip("tensorboardX")
  w = metric_writers.make_writer(str(tmp_path), tensorboard="auto")
  w.write(10, {"l_mllm": 0.75, "l_privacy": -0.25})
  w.write(20, {"l_mllm": 0.5, "l_privacy": -0.5})
  w.close()
  scalars = read_tensorboard_scalars(str(tmp_path / "tensorboard"))
  assert scalars["train/l_mllm"] == [(10, 0.75), (20, 0.5)]
  assert scalars["train/l_privacy"] == [(10, -0.25), (20, -0.5)]
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["l_mllm"] for r in rows] == [0.75, 0.5]


@pytest.mark.parametrize("value", [False, "false", "0", "off"])
def test_tensorboard_off_writes_only_jsonl(tmp_path, value):
  w = metric_writers.make_writer(str(tmp_path), tensorboard=value)
  w.write(1, {"x": 1.0})
  w.close()
  assert not (tmp_path / "tensorboard").exists()
  assert (tmp_path / "metrics.jsonl").exists()


def test_tensorboard_required_but_missing_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setattr(metric_writers, "tensorboard_available", lambda: False)
  with pytest.raises(ImportError, match=r"config\.tensorboard=true needs tensorboardX"):
    metric_writers.make_writer(str(tmp_path), tensorboard="true")
  # "auto" without it is just the JSON lines.
  w = metric_writers.make_writer(str(tmp_path), tensorboard="auto")
  assert [type(x) for x in w.writers] == [metric_writers.JsonlWriter]


def test_bad_tensorboard_value_names_the_field(tmp_path):
  with pytest.raises(ValueError, match=r"config\.tensorboard must be"):
    metric_writers.make_writer(str(tmp_path), tensorboard="sometimes")


def test_eval_prefix_writes_no_jsonl(tmp_path):
  pytest.importorskip("tensorboardX")
  w = metric_writers.make_writer(str(tmp_path), jsonl=False, prefix="eval")
  w.write(7, {"privacy_cmap": 91.5})
  w.close()
  assert not (tmp_path / "metrics.jsonl").exists()
  ((step, value),) = read_tensorboard_scalars(str(tmp_path / "tensorboard"))["eval/privacy_cmap"]
  assert step == 7 and math.isclose(value, 91.5, rel_tol=1e-6)
