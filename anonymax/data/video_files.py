"""Reading and writing users' video files (PyAV, i.e. FFmpeg) for `launch/anonymize.py`.

Frames are uint8 RGB arrays [T, H, W, 3]. Only the video stream is read: the audio track is
dropped on purpose, since voices are private too and the anonymizer does not touch sound.

Example:
  >>> frames, fps = read_video("clip.mp4", size=64)
  >>> write_video("anonymized.mp4", anonymize(frames), fps)
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")


def is_video(path: str) -> bool:
  return path.lower().endswith(VIDEO_EXTENSIONS)


def read_video(
  path: str, *, size: int = 0, max_frames: int | None = None
) -> tuple[np.ndarray, Fraction]:
  """Decodes the first video stream of `path` to uint8 RGB frames [T, H, W, 3] and its frame rate.

  Args:
    path: a video file FFmpeg can read.
    size: resize every frame to size×size (bilinear, as `launch/anonymize.py` does for images);
      0 keeps the original size.
    max_frames: stop after this many frames (None: all).

  Raises:
    ValueError: naming `path`, when it is not a readable video or holds no frame.
  """
  frames = []
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ValueError(f"{path}: no video stream")
      stream = container.streams.video[0]
      fps = stream.average_rate or stream.guessed_rate or Fraction(25)
      for frame in container.decode(stream):
        rgb = frame.to_ndarray(format="rgb24")
        if size > 0:
          rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
        frames.append(rgb)
        if max_frames is not None and len(frames) >= max_frames:
          break
  except av.FFmpegError as e:  # not a video, truncated header, unknown codec...
    raise ValueError(f"{path}: cannot read video ({type(e).__name__}: {e})") from e
  if not frames:
    raise ValueError(f"{path}: no decodable video frame")
  return np.stack(frames), Fraction(fps)  # rgb24 frames are uint8 already


def write_video(
  path: str, frames: np.ndarray, fps: Fraction | float, *, codec: str = "libx264", crf: int = 18
) -> None:
  """Encodes uint8 RGB frames [T, H, W, 3] to `path` (container from the extension, e.g. .mp4).

  4:2:0 chroma needs even sides, so an odd height or width is padded by repeating the last row
  or column. `crf` is x264's quality (lower is closer to the frames; 18 is visually lossless).
  """
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(
      f"{path}: expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}"
    )
  h, w = frames.shape[1:3]
  frames = np.pad(frames, [(0, 0), (0, h % 2), (0, w % 2), (0, 0)], mode="edge")
  rate = Fraction(fps).limit_denominator(1001)
  with av.open(path, mode="w") as container:
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
      stream.options = {"crf": str(crf)}
    for rgb in frames:
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):  # flush the encoder's buffered frames
      container.mux(packet)
