"""Which of a user's files to anonymize, and where each output goes.

Output names (under the output folder):
  * A folder given in `--inputs` is mirrored: `album/2024/photo.jpg` (with --recursive) goes to
    `OUT/2024/photo.jpg.png`; a file given directly goes to the output root.
  * The full original name is kept and the output format's extension appended, unless the name
    already ends with it: `photo.jpg` → `photo.jpg.png`, `photo.png` → `photo.png`,
    `holiday.mov` → `holiday.mov.mp4`, `walk.mp4` → `walk.mp4`, `clip.npy` → `clip.npy`.
    Images become PNG, videos H.264 .mp4, .npy clips stay .npy.
  * Two inputs that would still get one name (`a/photo.jpg` and `b/photo.jpg` given as folders,
    or names differing only in case, which are one file on some systems) are told apart by a
    suffix before the extension: the first in input order keeps the name, the next ones get
    `photo.jpg~2.png`, `photo.jpg~3.png`... The names depend only on the inputs, not on what the
    output folder already holds.

A plan is refused (ValueError, before anything is written) when the output folder is an input
folder or inside one, or when an output would land on an input file.

Hidden files (a leading dot, e.g. the `._photo.jpg` resource forks some systems leave on shared
drives) are not picked up from folders; a file named explicitly is always taken.
"""

from __future__ import annotations

import dataclasses
import os

from anonymax.data import video_files

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
CLIP_EXTENSION = ".npy"
# The format each kind of input is written in.
OUTPUT_EXTENSIONS = {"image": ".png", "video": ".mp4", "clip": ".npy"}
# Between a name and its output extension when two outputs would collide.
COLLISION_MARK = "~"


@dataclasses.dataclass(frozen=True)
class Job:
  """One input file and where its anonymized version goes.

  Attributes:
    source: the input file, as given or found.
    output: its output path, under the output folder.
    kind: "image", "video" or "clip" (a uint8 .npy clip [T, H, W, 3]).
  """

  source: str
  output: str
  kind: str


def kind_of(path: str) -> str:
  """ "video" or "clip" by extension; anything else is tried as an image."""
  if video_files.is_video(path):
    return "video"
  return "clip" if path.lower().endswith(CLIP_EXTENSION) else "image"


def is_supported(path: str) -> bool:
  """Whether a file found in a folder is picked up (by extension)."""
  return path.lower().endswith(IMAGE_EXTENSIONS + video_files.VIDEO_EXTENSIONS + (CLIP_EXTENSION,))


def _same(path: str) -> str:
  """A key under which two spellings of one file compare equal."""
  return os.path.normcase(os.path.realpath(path))


def _folder_files(folder: str, recursive: bool) -> list[str]:
  """Supported, non-hidden files of `folder` (and its subfolders), relative to it, sorted."""
  found = []
  for directory, subdirs, files in os.walk(folder):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if recursive else []
    rel = os.path.relpath(directory, folder)
    for f in files:
      if not f.startswith(".") and is_supported(f):
        found.append(os.path.normpath(os.path.join(rel, f)))
  return sorted(found)


def list_inputs(paths, *, recursive: bool = False) -> list[tuple[str, str]]:
  """(source path, output-relative name) of every input, in order, each file once.

  Args:
    paths: files and folders (`--inputs`).
    recursive: walk the folders' subfolders too (default: a folder's own files only).

  Raises:
    FileNotFoundError: naming the first path that does not exist.
  """
  out, seen = [], set()
  for p in paths:
    if os.path.isdir(p):
      found = [(os.path.join(p, rel), rel) for rel in _folder_files(p, recursive)]
    elif os.path.exists(p):
      found = [(p, os.path.basename(p))]
    else:
      raise FileNotFoundError(f"--inputs: {p} does not exist")
    for source, rel in found:
      if _same(source) not in seen:  # a file reached twice (a folder and a file in it)
        seen.add(_same(source))
        out.append((source, rel))
  return out


def output_name(relative: str, kind: str) -> str:
  """The output name of an input (see the module docstring): the name plus the format's
  extension, unless it already ends with it."""
  ext = OUTPUT_EXTENSIONS[kind]
  return relative if relative.lower().endswith(ext) else relative + ext


def _unique_names(names: list[str], kinds: list[str]) -> list[str]:
  """`names` with every repeat (compared case-insensitively) suffixed `~2`, `~3`... before its
  extension, the first occurrence keeping its name; no suffixed name takes another's."""
  key = lambda name: os.path.normpath(name).casefold()
  first = {}
  for i, name in enumerate(names):
    first.setdefault(key(name), i)
  taken = set(first)
  unique = []
  for i, (name, kind) in enumerate(zip(names, kinds)):
    if first[key(name)] != i:
      stem = name[: -len(OUTPUT_EXTENSIONS[kind])]
      n = 2
      while key(f"{stem}{COLLISION_MARK}{n}{OUTPUT_EXTENSIONS[kind]}") in taken:
        n += 1
      name = f"{stem}{COLLISION_MARK}{n}{OUTPUT_EXTENSIONS[kind]}"
      taken.add(key(name))
    unique.append(name)
  return unique


def _inside(path: str, folder: str) -> bool:
  path, folder = _same(path), _same(folder)
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def plan(paths, output: str, *, recursive: bool = False) -> list[Job]:
  """The jobs anonymizing `paths` into the folder `output`, one per input file.

  Raises:
    FileNotFoundError: an input does not exist.
    ValueError: `output` is an input folder or inside one, or an output path is an input file
      (one line naming both; nothing has been written).
  """
  for p in paths:
    if os.path.isdir(p) and _inside(output, p):
      raise ValueError(
        f"--output={output} is inside the input folder {p}: the anonymized files would mix with "
        "the originals; choose an output folder outside the inputs"
      )
  inputs = list_inputs(paths, recursive=recursive)
  kinds = [kind_of(source) for source, _ in inputs]
  names = _unique_names([output_name(rel, k) for (_, rel), k in zip(inputs, kinds)], kinds)
  jobs = [
    Job(source, os.path.join(output, name), kind)
    for (source, _), name, kind in zip(inputs, names, kinds)
  ]
  sources = {_same(job.source): job.source for job in jobs}
  for job in jobs:
    if _same(job.output) in sources:
      raise ValueError(
        f"--output={output}: {job.output} would replace the input {sources[_same(job.output)]}; "
        "choose an output folder outside the inputs"
      )
  return jobs
