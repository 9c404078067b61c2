"""Loads a script of benchmarks/ as a module, so its tests call its `main` at a tiny size."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> types.ModuleType:
  """benchmarks/<name>.py as the module `name`, registered in sys.modules (dataclasses defined in
  the script look their module up by name)."""
  if str(BENCHMARKS) not in sys.path:  # as `python benchmarks/<name>.py` has it: siblings import
    sys.path.insert(0, str(BENCHMARKS))
  spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module
