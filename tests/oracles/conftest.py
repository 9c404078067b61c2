"""Fixtures of the `hf` oracle's tests (tests/oracles/test_hf.py, test_prompts_hf.py).

torch and the tiny models are imported inside the fixtures, so the other oracle tests never need
the `[hf]` extra."""

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
  """Tiny models gain nothing from threads; on a busy CPU torch's spinning threads cost ~50x."""
  import torch  # noqa: PLC0415

  before = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
  """(path, config) of a tiny randomly initialised LLaVA-1.5 saved with `save_pretrained`."""
  from tests.oracles import tiny_hf_models  # noqa: PLC0415

  path = str(tmp_path_factory.mktemp("llava-tiny"))
  return path, tiny_hf_models.save_tiny_llava(path)
