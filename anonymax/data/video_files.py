"""Reading and writing users' video files (PyAV, i.e. FFmpeg) for `launch/anonymize.py`.

Frames are uint8 RGB arrays [H, W, 3] (a clip: [T, H, W, 3]). Only the video stream is read: the
audio track is dropped on purpose, since voices are private too and the anonymizer does not touch
sound. Nothing of the source's metadata (title, location, creation time, encoder tags) is copied.

Both directions stream, so that memory does not grow with a video's length:

  >>> info = probe("clip.mp4")                       # size, rate, frame count: no decoding
  >>> with VideoWriter("anonymized.mp4", info.fps) as out:
  ...   for frame in iter_frames("clip.mp4"):        # decoded one at a time
  ...     out.write(anonymize(frame[None]))

`read_video` and `write_video` do the same for a whole clip in memory (short clips, tests).

Phones store a portrait video as landscape frames plus a display rotation; since that rotation
is metadata we do not copy, `iter_frames` applies it to the pixels (as FFmpeg's own tools do) so
that the frames come out upright.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")


def is_video(path: str) -> bool:
  return path.lower().endswith(VIDEO_EXTENSIONS)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What a video's header says, read without decoding a frame.

  Attributes:
    width, height: the coded frame size (before any display rotation).
    fps: the average frame rate (25 when the container gives none).
    num_frames: the frame count the container declares; 0 when it does not say.
  """

  width: int
  height: int
  fps: Fraction
  num_frames: int


def _cannot_read(path: str, e: Exception) -> ValueError:
  return ValueError(f"{path}: cannot read video ({type(e).__name__}: {e})")


def _rate(stream) -> Fraction:
  return Fraction(stream.average_rate or stream.guessed_rate or Fraction(25))


def probe(path: str) -> VideoInfo:
  """The first video stream's size, rate and frame count from the header of `path`.

  Raises:
    ValueError: naming `path`, when it is not a readable video or has no video stream.
  """
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ValueError(f"{path}: no video stream")
      stream = container.streams.video[0]
      ctx = stream.codec_context
      return VideoInfo(int(ctx.width), int(ctx.height), _rate(stream), int(stream.frames or 0))
  except av.FFmpegError as e:  # not a video, truncated header, unknown codec...
    raise _cannot_read(path, e) from e


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
  """Applies a display rotation (counter-clockwise degrees, as `VideoFrame.rotation`)."""
  quarter_turns = int(round(rotation / 90.0)) % 4
  return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def iter_frames(
  path: str, *, size: int = 0, max_frames: int | None = None, autorotate: bool = True
) -> Iterator[np.ndarray]:
  """Decodes the first video stream of `path` lazily, one uint8 RGB frame [H, W, 3] at a time.

  Only the frame being yielded is held (plus FFmpeg's small decoding buffer), so a consumer that
  processes frames in chunks bounds memory by its chunk.

  Args:
    path: a video file FFmpeg can read.
    size: resize every frame to size×size (bilinear); 0 keeps the original size.
    max_frames: stop after this many frames (None: all).
    autorotate: apply the display rotation phones record for portrait videos.

  Raises:
    ValueError: naming `path`, when it is not a readable video or holds no frame (raised by the
      first `next`, or later if the file turns out to be damaged part way).
  """
  count = 0
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ValueError(f"{path}: no video stream")
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"  # frame threads: decoding keeps up with the anonymizer
      for frame in container.decode(stream):
        rgb = frame.to_ndarray(format="rgb24")  # uint8 already
        if autorotate:
          rgb = _upright(rgb, frame.rotation)
        if size > 0:
          rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
        count += 1
        yield rgb
        if max_frames is not None and count >= max_frames:
          return
  except av.FFmpegError as e:
    raise _cannot_read(path, e) from e
  if not count:
    raise ValueError(f"{path}: no decodable video frame")


def read_video(
  path: str, *, size: int = 0, max_frames: int | None = None
) -> tuple[np.ndarray, Fraction]:
  """Decodes the first video stream of `path` to uint8 RGB frames [T, H, W, 3] and its frame rate.

  The whole clip is held in memory: for users' files, stream with `iter_frames` instead.

  Args:
    path: a video file FFmpeg can read.
    size: resize every frame to size×size (bilinear); 0 keeps the original size.
    max_frames: stop after this many frames (None: all).

  Raises:
    ValueError: naming `path`, when it is not a readable video or holds no frame.
  """
  frames = np.stack(list(iter_frames(path, size=size, max_frames=max_frames)))
  return frames, probe(path).fps


def _check_frames(path: str, frames: np.ndarray) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(
      f"{path}: expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}"
    )
  return frames


class VideoWriter:
  """Encodes uint8 RGB frames to `path` as they come (container from the extension, e.g. .mp4).

  The file is created by the first `write`, which also fixes the frame size; `close` flushes the
  encoder. Used as a context manager, an exception inside the block removes the partial file, so
  a failed video never leaves half a file behind.

  4:2:0 chroma needs even sides, so an odd height or width is padded by repeating the last row
  or column. `crf` is x264's quality (lower is closer to the frames; 18 is visually lossless).
  The encoder holds a bounded look-ahead of frames of its own, independent of the video's length.
  """

  def __init__(
    self, path: str, fps: Fraction | float, *, codec: str = "libx264", crf: int = 18
  ) -> None:
    self.path = path
    self.rate = Fraction(fps).limit_denominator(1001)
    self.codec, self.crf = codec, crf
    self.frames_written = 0
    self._container = self._stream = None
    self._size: tuple[int, int] | None = None

  def _open(self, h: int, w: int) -> None:
    self._size = (h, w)
    self._container = av.open(self.path, mode="w")
    stream = self._container.add_stream(self.codec, rate=self.rate)
    stream.width, stream.height = w + w % 2, h + h % 2
    stream.pix_fmt = "yuv420p"
    if self.codec == "libx264":
      stream.options = {"crf": str(self.crf)}
    self._stream = stream

  def write(self, frames: np.ndarray) -> None:
    """Appends uint8 RGB frames [T, H, W, 3] (or one frame [H, W, 3]) of the first write's size."""
    frames = np.asarray(frames)
    frames = _check_frames(self.path, frames[None] if frames.ndim == 3 else frames)
    h, w = frames.shape[1:3]
    if self._size is None:
      self._open(h, w)
    elif (h, w) != self._size:
      raise ValueError(
        f"{self.path}: frames of {h}×{w} after frames of {self._size[0]}×{self._size[1]}"
      )
    if h % 2 or w % 2:  # (a copy: only when needed)
      frames = np.pad(frames, [(0, 0), (0, h % 2), (0, w % 2), (0, 0)], mode="edge")
    for rgb in frames:
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
      for packet in self._stream.encode(frame):
        self._container.mux(packet)
    self.frames_written += len(frames)

  def close(self) -> None:
    """Flushes the encoder's buffered frames and closes the file.

    Raises:
      ValueError: naming the file, when no frame was written (no file is created then).
    """
    if self._container is None:
      raise ValueError(f"{self.path}: no frame to write")
    try:
      for packet in self._stream.encode(None):
        self._container.mux(packet)
    finally:
      self._container.close()
      self._container = None

  def abort(self) -> None:
    """Closes without flushing and removes the partial file."""
    if self._container is not None:
      try:
        self._container.close()
      except av.FFmpegError:
        pass  # the file goes anyway
      self._container = None
      if os.path.exists(self.path):
        os.remove(self.path)

  def __enter__(self) -> VideoWriter:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()


def write_video(
  path: str, frames: np.ndarray, fps: Fraction | float, *, codec: str = "libx264", crf: int = 18
) -> None:
  """Encodes uint8 RGB frames [T, H, W, 3] to `path` in one go (see `VideoWriter`)."""
  frames = _check_frames(path, frames)  # before anything is created
  with VideoWriter(path, fps, codec=codec, crf=crf) as writer:
    writer.write(frames)
