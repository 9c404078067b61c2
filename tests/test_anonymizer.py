"""The standalone anonymizer: every checkpoint holds it, and it restores without the training world."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import anonymax
from anonymax import anonymizer, checkpoint, experiment, run_config
from anonymax.configs import synthetic
from tests.test_train import SpyOracle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def save_workdir(config, w: str, exp=None):
  """A workdir as training leaves it at step 3 (config.json and one checkpoint), without
  training; the parameters are moved away from the initialisation, so restoring the wrong ones
  would show. Returns the workdir."""
  exp = exp or experiment.build(config, oracle=SpyOracle())
  state = exp.init_state()
  state = state.replace(params=jax.tree.map(lambda p: p + 0.3, state.params), step=jnp.int32(3))
  os.makedirs(w)
  run_config.save(exp.config, w)
  checkpoint.save(checkpoint.manager(w), 3, state, {"step": 3}, anonymizer.model_config(exp.config))
  return w


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A workdir as training leaves it, at step 3: config.json and one checkpoint."""
  root = tmp_path_factory.mktemp("anonymizer")
  config = synthetic.get_config("smoke")
  config.data.data_dir = str(root / "tfds")
  exp = experiment.build(config, oracle=SpyOracle())
  w = save_workdir(config, str(root / "w"), exp)
  params = jax.tree.map(lambda p: p + 0.3, exp.init_state().params)
  return w, exp, jax.device_get(params)


def test_restore_gives_the_checkpoints_parameters_and_model(workdir):
  w, exp, params = workdir
  restored = anonymizer.restore(w)
  assert restored.step == 3 and restored.multiple == 2  # (8, 16): one halving
  assert restored.description["model"]["head"] == "mask"
  assert restored.description["dataset"] == "synthetic"
  for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), b)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 8, 8, 3)), jnp.float32)
  np.testing.assert_array_equal(restored.apply(x), exp.anonymizer.apply({"params": params}, x))


def test_load_anonymizer_maps_uint8_images_of_any_size_to_uint8(workdir):
  w, exp, params = workdir
  anonymize = anonymax.load_anonymizer(w)
  images = np.random.default_rng(1).integers(0, 256, (3, 9, 14, 3), np.uint8)  # odd sizes
  out = anonymize(images)
  assert out.shape == images.shape and out.dtype == np.uint8
  padded = np.pad(images, [(0, 0), (0, 1), (0, 0), (0, 0)], mode="reflect")
  want = exp.anonymizer.apply({"params": params}, jnp.asarray(padded, jnp.float32) / 255.0)
  want = np.clip(np.rint(np.asarray(want) * 255.0), 0, 255).astype(np.uint8)[:, :9]
  np.testing.assert_array_equal(out, want)
  clips = np.stack([images, images[::-1]], axis=1)  # [3, 2, 9, 14, 3]: frame by frame
  np.testing.assert_array_equal(anonymize(clips)[:, 0], out)
  with pytest.raises(ValueError, match="expected uint8 images"):
    anonymize(images.astype(np.float32))


def test_anonymizing_imports_no_dataset_and_no_tfds(workdir):
  """In a fresh interpreter: load_anonymizer needs neither the data builders nor TFDS."""
  w, _, _ = workdir
  script = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import anonymax
    out = anonymax.load_anonymizer(sys.argv[1])(np.zeros((1, 8, 8, 3), np.uint8))
    data = sorted(m for m in sys.modules if m.startswith("anonymax.data"))
    print(json.dumps({"shape": out.shape, "tfds": "tensorflow_datasets" in sys.modules,
                      "data": data, "oracles": any(m.startswith("anonymax.oracles") for m in sys.modules)}))
    """
  )
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
    [sys.executable, "-c", script, w], capture_output=True, text=True, env=env, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  seen = json.loads(proc.stdout.strip().splitlines()[-1])
  assert seen == {"shape": [1, 8, 8, 3], "tfds": False, "data": [], "oracles": False}


def test_the_anonymize_launcher_imports_no_dataset_and_no_tfds(workdir, tmp_path):
  """launch/anonymize.py --workdir=W (no --config), run in a fresh interpreter."""
  from PIL import Image

  w, _, _ = workdir
  inputs = tmp_path / "in"
  inputs.mkdir()
  Image.fromarray(np.full((12, 10, 3), 128, np.uint8)).save(inputs / "photo.png")
  script = textwrap.dedent(
    """
    import json, runpy, sys
    launcher, rest = sys.argv[1], sys.argv[2:]
    sys.argv = [launcher, *rest]
    try:
      runpy.run_path(launcher, run_name="__main__")
    except SystemExit as e:
      assert not e.code, e.code
    builders = [m for m in sys.modules if m.startswith("anonymax.data.") and m != "anonymax.data.video_files"]
    print(json.dumps({"tfds": "tensorflow_datasets" in sys.modules, "builders": builders}))
    """
  )
  launcher = os.path.join(ROOT, "launch", "anonymize.py")
  args = [launcher, f"--workdir={w}", f"--inputs={inputs}", f"--output={tmp_path / 'out'}"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
    [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"tfds": False, "builders": []}
  assert (tmp_path / "out" / "photo.png").exists()


def test_a_workdir_without_a_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoints in"):
    anonymax.load_anonymizer(str(tmp_path))
