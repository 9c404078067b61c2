r"""Anonymizes your own images (or .npy clips) with a trained anonymizer, before they go anywhere.

  python launch/anonymize.py --config=configs/synthetic.py --workdir=workdirs/synthetic \
      --inputs=photo1.jpg,photos/ --output=anonymized/

Images are read with Pillow (any mode is converted to RGB), resized to --size (default: the training
image size; 0 keeps the original size, padded to what the U-Net needs), anonymized and written as PNG
under --output with the same base name. `.npy` files hold uint8 clips [T, H, W, 3].
An unreadable or truncated file is reported by name and skipped; nothing already written is lost.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
config_flags.DEFINE_config_file(
  "config",
  os.path.join(_ROOT, "configs", "synthetic.py"),
  "The training config.",
  lock_config=False,
)
flags.DEFINE_string("workdir", None, "The training workdir holding checkpoints/.", required=True)
flags.DEFINE_list("inputs", None, "Image files, .npy clips, or directories of them.", required=True)
flags.DEFINE_string("output", "anonymized", "Output directory.")
flags.DEFINE_integer("size", -1, "Resize to size×size (-1: the training size; 0: keep, pad).")

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_inputs(paths):
  files = []
  for p in paths:
    if os.path.isdir(p):
      files += sorted(
        os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(_IMAGE_EXT + (".npy",))
      )
    elif os.path.exists(p):
      files.append(p)
    else:
      raise FileNotFoundError(f"--inputs: {p} does not exist")
  return files


def read_visual(path: str, size: int) -> np.ndarray:
  """uint8 [H, W, 3] or [T, H, W, 3]; a clear error naming the file when it cannot be read."""
  if path.lower().endswith(".npy"):
    clip = np.load(path)
    if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
      raise ValueError(f"{path}: expected a uint8 clip [T, H, W, 3], got {clip.dtype} {clip.shape}")
    return clip
  try:
    with Image.open(path) as img:
      img = img.convert("RGB")
      if size > 0:
        img = img.resize((size, size), Image.BILINEAR)
      return np.asarray(img, np.uint8)
  except OSError as e:  # truncated, not an image, unsupported mode...
    raise ValueError(f"{path}: cannot read image ({e})") from e


def pad_to_multiple(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
  h, w = x.shape[-3], x.shape[-2]
  ph, pw = (-h) % multiple, (-w) % multiple
  pad = [(0, 0)] * (x.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
  return np.pad(x, pad, mode="reflect" if min(h, w) > 1 else "edge"), (h, w)


def main(argv):
  del argv
  import jax

  from anonymax import evaluate

  config = flags.FLAGS.config
  anonymizer, params, _ = evaluate.restore_anonymizer(
    config.copy_and_resolve_references(), flags.FLAGS.workdir
  )
  size = config.data.image_size if flags.FLAGS.size < 0 else flags.FLAGS.size
  multiple = 2 ** (len(config.anonymizer.features) - 1)
  apply = jax.jit(lambda x: anonymizer.apply({"params": params}, x))
  os.makedirs(flags.FLAGS.output, exist_ok=True)
  failures = 0
  for path in tqdm(list_inputs(flags.FLAGS.inputs), desc="anonymize"):
    try:
      visual = read_visual(path, size)
    except ValueError as e:
      logging.error("%s", e)
      failures += 1
      continue
    padded, (h, w) = pad_to_multiple(visual, multiple)
    out = np.asarray(apply(padded[None].astype(np.float32) / 255.0))[0][..., :h, :w, :]
    out = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
    base = os.path.splitext(os.path.basename(path))[0]
    if out.ndim == 4:
      np.save(os.path.join(flags.FLAGS.output, base + ".npy"), out)
    else:
      Image.fromarray(out).save(os.path.join(flags.FLAGS.output, base + ".png"))
  print(f"wrote to {flags.FLAGS.output}; {failures} file(s) skipped")


if __name__ == "__main__":
  app.run(main)
