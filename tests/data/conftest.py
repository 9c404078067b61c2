"""Fixtures shared by the dataset tests."""

import pytest


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  """A fresh TFDS data directory for each test module."""
  return str(tmp_path_factory.mktemp("tfds"))
