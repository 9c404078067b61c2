"""The data layer imports only downwards: no oracle, model, training or evaluation module."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import anonymax.data

UPPER = ("anonymax.oracles", "anonymax.models", "anonymax.train", "anonymax.evaluate")


def _modules_loaded_by(*names: str) -> set[str]:
  """The anonymax modules a fresh interpreter holds after importing `names`."""
  code = (
    "import importlib, json, sys\n"
    f"for n in {list(names)!r}: importlib.import_module(n)\n"
    "print(json.dumps(sorted(m for m in sys.modules if m.startswith('anonymax'))))"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_data_modules_import_nothing_above_them():
  names = [f"anonymax.data.{m.name}" for m in pkgutil.iter_modules(anonymax.data.__path__)]
  assert "anonymax.data.synthetic" in names and "anonymax.data.pa_hmdb51" in names
  loaded = _modules_loaded_by(*names)
  assert set(names) <= loaded
  assert not [m for m in loaded if m.startswith(UPPER)]


def test_hmdb51_reads_pa_hmdb51_annotations_without_its_builder():
  loaded = _modules_loaded_by("anonymax.data.hmdb51")
  assert "anonymax.data.pa_hmdb51_annotations" in loaded
  assert "anonymax.data.pa_hmdb51" not in loaded
  assert "anonymax.data.synthetic" not in loaded  # the video datasets need no synthetic builder
