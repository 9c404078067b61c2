"""Fixture videos whose decoded frames say which video and which frame they are."""

from __future__ import annotations

import numpy as np


def frames_of(video: int, num_frames: int) -> np.ndarray:
  """16×20 frames of one colour each: red tells the video, green the frame (steps of 20)."""
  frames = np.zeros((num_frames, 16, 20, 3), np.uint8)
  for i in range(num_frames):
    frames[i] = (30 + 30 * video, 10 + 20 * i, 128)
  return frames


def frame_ids(clip: np.ndarray) -> tuple[int, list[int]]:
  """(video, frame indices) read back from a decoded clip's colours."""
  mean = clip.reshape(clip.shape[0], -1, 3).mean(axis=1)
  videos = np.rint((mean[:, 0] - 30) / 30).astype(int)
  assert len(set(videos)) == 1
  return int(videos[0]), [int(i) for i in np.rint((mean[:, 1] - 10) / 20)]
