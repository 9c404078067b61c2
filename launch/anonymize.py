r"""Anonymizes your own images and videos with a trained anonymizer, before they go anywhere.

  python launch/anonymize.py --workdir=workdirs/synthetic \
      --inputs=photo1.jpg,holiday.mp4,photos/ --output=anonymized/

The anonymizer is restored alone from the workdir's latest checkpoint: no dataset, no reviewer,
no config file needed (a --config, if given, must describe the workdir's run).

Images are read with Pillow (any mode is converted to RGB), resized to --size (default: the training
image size; 0 keeps the original size, padded to what the U-Net needs), anonymized and written as PNG
under --output with the same base name. Videos (.mp4 .m4v .mov .avi .mkv .webm, read with PyAV)
are anonymized frame by frame, --chunk frames at a time, and written as H.264 .mp4 at the same frame
rate; their audio track is dropped (voices are private too). `.npy` files hold uint8 clips
[T, H, W, 3] and are written back as .npy.
An unreadable or truncated file is reported by name and skipped; nothing already written is lost.
"""

import os

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags
from PIL import Image
from tqdm import tqdm

from anonymax import anonymizer as anonymizer_lib
from anonymax import cli, run_config
from anonymax.data import video_files
from anonymax.types import to_uint8

config_flags.DEFINE_config_file(
  "config",
  None,
  "Optional: the training config (checked against <workdir>/config.json).",
  lock_config=False,
)
flags.DEFINE_string("workdir", None, "The training workdir holding checkpoints/.", required=True)
flags.DEFINE_list(
  "inputs", None, "Image files, video files, .npy clips, or directories of them.", required=True
)
flags.DEFINE_string("output", "anonymized", "Output directory.")
flags.DEFINE_integer("size", -1, "Resize to size×size (-1: the training size; 0: keep, pad).")
flags.DEFINE_integer("chunk", 16, "Video frames anonymized per call (bounds memory).")
flags.DEFINE_integer("crf", 18, "H.264 quality of written videos (lower: closer, larger files).")

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_inputs(paths):
  files = []
  for p in paths:
    if os.path.isdir(p):
      files += sorted(
        os.path.join(p, f)
        for f in os.listdir(p)
        if f.lower().endswith(_IMAGE_EXT + video_files.VIDEO_EXTENSIONS + (".npy",))
      )
    elif os.path.exists(p):
      files.append(p)
    else:
      raise FileNotFoundError(f"--inputs: {p} does not exist")
  return files


def read_visual(path: str, size: int) -> np.ndarray:
  """uint8 [H, W, 3] or a .npy clip [T, H, W, 3]; a clear error naming the file if unreadable."""
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


def anonymize_frames(apply, frames: np.ndarray, multiple: int, chunk: int) -> np.ndarray:
  """Frame-wise anonymization of uint8 frames [T, H, W, 3], `chunk` frames per call.

  The last chunk is padded with repeats of its final frame, so every call has the same shape and
  the anonymizer compiles once per video size (frames are independent: the U-Net works per frame).
  """
  padded, (h, w) = anonymizer_lib.pad_to_multiple(frames, multiple)
  out = []
  for start in range(0, len(padded), chunk):
    part = padded[start : start + chunk]
    n = len(part)
    part = np.concatenate([part, np.repeat(part[-1:], chunk - n, axis=0)])
    y = np.asarray(apply(part.astype(np.float32) / 255.0))[:n, :h, :w]
    out.append(to_uint8(y))
  return np.concatenate(out)


@cli.user_errors
def main(argv):
  del argv
  import jax

  if flags.FLAGS.config is not None:  # only to check that it is this workdir's run
    run_config.resolve(flags.FLAGS.workdir, flags.FLAGS.config)
  restored = anonymizer_lib.restore(flags.FLAGS.workdir)
  size = restored.description["image_size"] if flags.FLAGS.size < 0 else flags.FLAGS.size
  multiple = restored.multiple
  apply = jax.jit(restored.apply)
  os.makedirs(flags.FLAGS.output, exist_ok=True)
  failures = 0
  for path in tqdm(list_inputs(flags.FLAGS.inputs), desc="anonymize"):
    base = os.path.join(flags.FLAGS.output, os.path.splitext(os.path.basename(path))[0])
    is_video = video_files.is_video(path)
    try:
      if is_video:
        frames, fps = video_files.read_video(path, size=size)
      else:
        visual = read_visual(path, size)
    except ValueError as e:
      logging.error("%s", e)
      failures += 1
      continue
    if is_video:
      out = anonymize_frames(apply, frames, multiple, flags.FLAGS.chunk)
      video_files.write_video(base + ".mp4", out, fps, crf=flags.FLAGS.crf)
      continue
    padded, (h, w) = anonymizer_lib.pad_to_multiple(visual, multiple)
    out = to_uint8(np.asarray(apply(padded[None].astype(np.float32) / 255.0))[0][..., :h, :w, :])
    if out.ndim == 4:
      np.save(base + ".npy", out)
    else:
      Image.fromarray(out).save(base + ".png")
  print(f"wrote to {flags.FLAGS.output}; {failures} file(s) skipped")


if __name__ == "__main__":
  app.run(main)
