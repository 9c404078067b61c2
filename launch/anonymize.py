r"""Anonymizes your own images and videos before they go anywhere.

  python launch/anonymize.py --workdir=workdirs/synthetic \
      --inputs=photo1.jpg,holiday.mp4,photos/ --output=anonymized/
  python launch/anonymize.py --method=face-blur --inputs=photos/ --recursive --output=blurred/

Methods (--method):
  * learned (default): the anonymizer of --workdir's latest checkpoint, restored alone (no
    dataset, no reviewer, no config file; a --config, if given, must describe the workdir's run).
    It keeps each file's size and aspect ratio but works at --work_size pixels on the longer side
    (default: 8 × the training image size), so no detail finer than that survives.
  * face-blur / face-blacken: faces found by a face detector are blurred / blackened, the rest
    kept (needs `pip install 'anonymax[faces]'`; no workdir).

Files:
  * Images (.png .jpg .jpeg .bmp .webp .tif .tiff) are shown upright (EXIF orientation), 16-bit
    ones scaled to 8 bit, and written as PNG of the same size with their transparency kept.
  * Videos (.mp4 .m4v .mov .avi .mkv .webm, read with PyAV) are streamed: --chunk frames are
    decoded, anonymized and encoded at a time (memory does not grow with the length), and written
    as H.264 .mp4 at the same frame rate, without the audio track (voices are private too).
  * `.npy` files hold uint8 clips [T, H, W, 3] and are written back as .npy, also by chunks.
  * Nothing of the originals' metadata is written: no EXIF or GPS, no PNG text, no video tags.

Outputs mirror the input folders under --output and keep the full original name, plus the output
format's extension when it differs: `photos/2024/beach.jpg` → `OUT/2024/beach.jpg.png` (with
--recursive), `walk.mp4` → `OUT/walk.mp4`. Two inputs that would share an output name get `~2`,
`~3`... before the extension. An --output that is an input folder (or inside one) is refused, an
existing output file is kept unless --overwrite is given, and an output is only moved into place
once complete.

A file that cannot be anonymized (unreadable, truncated, over --max_pixels, an unsupported array,
out of memory) is named with the reason and skipped; the others go on. The last line says
"wrote N file(s) to OUT; M skipped". Exit status: 0 when every file was written, 1 when some were
skipped, 2 for a usage error (nothing written). The libraries' own logs are hidden unless
--verbosity is given (e.g. --verbosity=0).
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags
from PIL import Image

from anonymax import cli, methods, run_config
from anonymax.files import plan, runner

config_flags.DEFINE_config_file(
  "config",
  None,
  "Optional, with --method=learned: the training config, checked against <workdir>/config.json "
  "(an error if it describes another run).",
  lock_config=False,
)
flags.DEFINE_enum(
  "method",
  "learned",
  list(methods.METHODS),
  "How to anonymize: learned (the --workdir's trained anonymizer), face-blur or face-blacken "
  "(detected faces blurred or blackened; no workdir needed).",
)
flags.DEFINE_string(
  "workdir", None, "The training workdir holding checkpoints/ (required for --method=learned)."
)
flags.DEFINE_list(
  "inputs",
  None,
  "Comma-separated image files, video files, .npy clips, or folders of them.",
  required=True,
)
flags.DEFINE_string(
  "output",
  "anonymized",
  "Output folder (created if needed); must not be an input folder or inside one.",
)
flags.DEFINE_bool(
  "recursive", False, "Also walk the input folders' subfolders (mirrored under --output)."
)
flags.DEFINE_bool(
  "overwrite", False, "Replace output files that exist already (default: skip those inputs)."
)
flags.DEFINE_integer(
  "max_pixels",
  runner.DEFAULT_MAX_PIXELS,
  "Largest image or video frame read, in pixels (width × height), checked from the file's "
  "header before decoding; bigger files are skipped.",
  lower_bound=1,
)
flags.DEFINE_alias("max-pixels", "max_pixels")
flags.DEFINE_integer(
  "work_size",
  None,
  "--method=learned: the longer side, in pixels, at which the anonymizer works (default: 8 × "
  "the training image size, never above a file's own size); outputs are resized back.",
  lower_bound=1,
)
flags.DEFINE_alias("work-size", "work_size")
flags.DEFINE_integer(
  "detect_side",
  1280,
  "--method=face-blur/face-blacken: larger images are downscaled to this longer side for face "
  "detection (faster; faces under about 10 px after it are missed).",
  lower_bound=32,
)
flags.DEFINE_alias("detect-side", "detect_side")
flags.DEFINE_integer(
  "size",
  0,
  "0 (default): keep each file's size and aspect ratio. N > 0: resize inputs to N×N first "
  "(square, like the training data; outputs are N×N).",
  lower_bound=0,
)
flags.DEFINE_integer(
  "chunk", 16, "Video and clip frames anonymized per call (bounds memory).", lower_bound=1
)
flags.DEFINE_integer(
  "crf",
  18,
  "H.264 quality of written videos, 0-51 (lower: closer to the frames, larger files).",
  lower_bound=0,
  upper_bound=51,
)


def load_method(f) -> methods.Method:
  """The --method, checked against --workdir and --config; one-line errors for a user's mistake."""
  if f.config is not None:  # only to check that it describes this workdir's run
    if not f.workdir:
      raise ValueError("--config is only checked against a --workdir: give --workdir too")
    run_config.resolve(f.workdir, f.config)
  try:
    return methods.load_method(
      f.method, workdir=f.workdir, work_size=f.work_size, detect_side=f.detect_side
    )
  except ImportError as e:  # the face methods' optional packages
    raise ValueError(str(e)) from e


@cli.user_errors
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}: give files with --inputs=a,b,...")
  f = flags.FLAGS
  if not f["verbosity"].present:
    # The checkpoint library logs each read at INFO and WARNING: noise that would bury the
    # method's warning and the skipped files (--verbosity=0 shows it again).
    logging.set_verbosity(logging.ERROR)
  # Planning first: a missing input or an --output among the inputs fails before anything loads.
  jobs = plan.plan(f.inputs, f.output, recursive=f.recursive)
  method = load_method(f)
  print(f"method {method.description}", file=sys.stderr)
  if method.warning:
    print(f"\nWARNING: {method.warning}\n", file=sys.stderr, flush=True)
  if not jobs:
    print("no image, video or .npy file found in --inputs", file=sys.stderr)
  # Pillow refuses, in the header, images over twice this (and we refuse those over it).
  Image.MAX_IMAGE_PIXELS = f.max_pixels
  options = runner.Options(
    chunk=f.chunk, crf=f.crf, max_pixels=f.max_pixels, size=f.size, overwrite=f.overwrite
  )
  summary = runner.anonymize_files(jobs, method, options)
  print(f"wrote {len(summary.written)} file(s) to {f.output}; {len(summary.skipped)} skipped")
  return 1 if summary.skipped else 0


if __name__ == "__main__":
  app.run(main)
