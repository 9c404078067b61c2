"""Anonymizing planned files (`plan.Job`) with a method, one file at a time, losing none.

* Every output is written to a hidden temporary file beside it and moved into place only once
  complete, so an interrupted or failed file leaves nothing behind; an existing output is never
  replaced unless `overwrite` is set.
* Videos and .npy clips are streamed: `chunk` frames are decoded (or read from the memory-mapped
  clip), anonymized and encoded at a time, so memory is bounded by the chunk, not the length.
* Any failure of one file (unreadable, a decompression bomb, an unsupported array, the model out
  of memory) is reported in one line naming the file, and the next file goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from anonymax.data import video_files
from anonymax.files import images
from anonymax.files.plan import Job

DEFAULT_MAX_PIXELS = 50_000_000
_OOM_HINT = "out of memory while anonymizing (try a smaller --chunk, --work_size or --max_pixels)"


@dataclasses.dataclass(frozen=True)
class Options:
  """How files are anonymized (the launcher's flags).

  Attributes:
    chunk: video and clip frames anonymized per call.
    crf: H.264 quality of written videos.
    max_pixels: the largest image or frame (width × height) read; checked in the header.
    size: resize inputs to size×size before anonymizing (0: keep the original size).
    overwrite: replace existing output files (default: skip them).
  """

  chunk: int = 16
  crf: int = 18
  max_pixels: int = DEFAULT_MAX_PIXELS
  size: int = 0
  overwrite: bool = False


@dataclasses.dataclass
class Summary:
  """What a run did: the outputs written, and (source, reason) for each file skipped."""

  written: list[str] = dataclasses.field(default_factory=list)
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def describe_failure(path: str, error: BaseException) -> str:
  """One line saying why `path` was skipped (without repeating the path)."""
  name = type(error).__name__
  if isinstance(error, MemoryError) or (
    name in ("XlaRuntimeError", "JaxRuntimeError") and "RESOURCE_EXHAUSTED" in str(error)
  ):
    return _OOM_HINT
  lines = str(error).strip().splitlines()
  message = lines[0].removeprefix(f"{path}: ") if lines else ""
  if isinstance(error, (ValueError, FileExistsError)) and message:
    return message  # our own messages say what is wrong already
  return f"{name}: {message}" if message else name


@contextlib.contextmanager
def _staged(output: str, overwrite: bool) -> Iterator[str]:
  """Yields a temporary path beside `output`; moves it to `output` when the block succeeds.

  Without `overwrite`, an existing `output` is never replaced (FileExistsError), even one that
  appeared while the file was being anonymized.
  """
  if not overwrite and os.path.lexists(output):
    raise FileExistsError(f"{output} exists already (--overwrite replaces it)")
  folder, name = os.path.split(output)
  os.makedirs(folder or ".", exist_ok=True)
  # Hidden, and ending in the output's extension so that the encoders pick the same format.
  temp = os.path.join(folder, f".{name}.{os.getpid()}.partial{os.path.splitext(name)[1]}")
  try:
    yield temp
    if overwrite:
      os.replace(temp, output)
    else:
      try:
        os.link(temp, output)  # atomic, and fails rather than replace
      except FileExistsError:
        raise FileExistsError(f"{output} exists already (--overwrite replaces it)") from None
      except OSError:  # a file system without hard links
        if os.path.lexists(output):
          raise FileExistsError(f"{output} exists already (--overwrite replaces it)") from None
        os.rename(temp, output)
  finally:
    if os.path.lexists(temp):
      os.remove(temp)


def chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
  """Groups an iterable of frames [H, W, 3] into arrays [≤ size, H, W, 3], pulling only `size`
  frames at a time."""
  frames = iter(frames)
  while True:
    part = list(itertools.islice(frames, size))
    if not part:
      return
    batch = np.stack(part)
    del part  # not held while the consumer works on the batch
    yield batch


def _anonymize_chunk(anonymize, part: np.ndarray, chunk: int, pad: bool) -> np.ndarray:
  """`anonymize` on a chunk; a short last chunk is padded to `chunk` frames (repeating its last
  one) when `pad`, so that a jitted model sees one shape per video size and compiles once."""
  n = len(part)
  if pad and n < chunk:
    part = np.concatenate([part, np.repeat(part[-1:], chunk - n, axis=0)])
  out = np.asarray(anonymize(part))
  if out.shape != part.shape or out.dtype != np.uint8:
    raise ValueError(f"the method returned {out.dtype} {out.shape} for {part.shape}")
  return out[:n]


def _resized(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
  for frame in frames:
    yield images.resize(frame, None, size)[0] if size else frame


def anonymize_image(job: Job, method, options: Options) -> None:
  """One image → a PNG of the same size (or size×size), alpha kept, no metadata."""
  rgb, alpha = images.read_image(job.source, max_pixels=options.max_pixels)
  if options.size:
    rgb, alpha = images.resize(rgb, alpha, options.size)
  out = _anonymize_chunk(method.anonymize, rgb[None], 1, pad=False)[0]
  with _staged(job.output, options.overwrite) as temp:
    images.write_png(temp, out, alpha)


def anonymize_video(job: Job, method, options: Options, *, progress: bool = True) -> None:
  """One video → H.264 .mp4 at its frame rate, streamed `options.chunk` frames at a time; no audio,
  no metadata."""
  info = video_files.probe(job.source)
  images.check_pixels(job.source, info.width, info.height, options.max_pixels)
  frames = _resized(video_files.iter_frames(job.source), options.size)
  pad = method.name == "learned"  # the face methods are not compiled: padding only costs them
  with (
    _staged(job.output, options.overwrite) as temp,
    video_files.VideoWriter(temp, info.fps, crf=options.crf) as writer,
    tqdm(
      total=info.num_frames or None,
      desc=os.path.basename(job.source),
      unit="frame",
      leave=False,
      position=1,
      disable=not progress,
    ) as bar,
  ):
    for part in chunks(frames, options.chunk):
      writer.write(_anonymize_chunk(method.anonymize, part, options.chunk, pad))
      bar.update(len(part))


def _open_clip(path: str) -> np.ndarray:
  """A .npy clip memory-mapped (read lazily), checked to be uint8 [T, H, W, 3]."""
  clip = np.load(path, mmap_mode="r", allow_pickle=False)
  if not isinstance(clip, np.ndarray):  # np.load opens a .npz archive whatever its name
    clip.close()
    raise ValueError(f"{path}: a .npz archive, not a .npy array")
  if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3 or not len(clip):
    raise ValueError(f"{path}: expected a uint8 clip [T, H, W, 3], got {clip.dtype} {clip.shape}")
  return clip


def anonymize_clip(job: Job, method, options: Options) -> None:
  """One .npy clip [T, H, W, 3] → a .npy clip, `options.chunk` frames in memory at a time."""
  clip = _open_clip(job.source)
  t, h, w, _ = clip.shape
  images.check_pixels(job.source, w, h, options.max_pixels)
  if options.size:
    h = w = options.size
  pad = method.name == "learned"
  with _staged(job.output, options.overwrite) as temp:
    out = np.lib.format.open_memmap(temp, mode="w+", dtype=np.uint8, shape=(t, h, w, 3))
    try:
      for start in range(0, t, options.chunk):
        part = np.stack(list(_resized(clip[start : start + options.chunk], options.size)))
        out[start : start + len(part)] = _anonymize_chunk(
          method.anonymize, part, options.chunk, pad
        )
      out.flush()
    finally:
      del out  # closes the map before the file is moved


_BY_KIND = {"image": anonymize_image, "video": anonymize_video, "clip": anonymize_clip}


def anonymize_files(
  jobs: list[Job],
  method,
  options: Options = Options(),
  *,
  progress: bool = True,
  report: Callable[[str], None] | None = None,
) -> Summary:
  """Anonymizes every job's file with `method` (an `anonymax.methods.Method`), skipping failures.

  Args:
    jobs: from `plan.plan`.
    method: what anonymizes the pixels.
    options: chunk, quality, pixel cap, resizing, overwriting.
    progress: show progress bars over the files and over each video's frames (stderr).
    report: called with one line per skipped file (default: printed to stderr).

  Returns:
    The outputs written and the files skipped, with why.
  """
  if report is None:
    report = lambda line: tqdm.write(line, file=sys.stderr)
  summary = Summary()
  for job in tqdm(jobs, desc="files", unit="file", disable=not progress):
    try:
      if not options.overwrite and os.path.lexists(job.output):  # before decoding anything
        raise FileExistsError(f"{job.output} exists already (--overwrite replaces it)")
      if job.kind == "video":
        anonymize_video(job, method, options, progress=progress)
      else:
        _BY_KIND[job.kind](job, method, options)
    except Exception as e:  # noqa: BLE001 - whatever breaks one file must not stop the others
      reason = describe_failure(job.source, e)
      summary.skipped.append((job.source, reason))
      report(f"skipped {job.source}: {reason}")
      continue
    summary.written.append(job.output)
  return summary
