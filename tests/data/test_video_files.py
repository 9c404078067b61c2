"""Tests for anonymax.data.video_files: PyAV round trips, odd sizes, bad files named."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from anonymax.data import video_files


def smooth_frames(t: int, h: int, w: int) -> np.ndarray:
  """A gradient background with a square moving right: easy for a lossy codec, and every frame
  differs from the others."""
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([255 * xx / w, 255 * yy / h, np.full((h, w), 128.0)], -1)
  frames = np.repeat(base[None], t, axis=0)
  for i in range(t):
    x0 = 2 + 2 * i
    frames[i, h // 4 : h // 4 + 8, x0 : x0 + 8] = (250, 20, 20)
  return frames.astype(np.uint8)


def test_round_trip_keeps_frames_count_rate_and_content(tmp_path):
  frames = smooth_frames(12, 32, 48)
  path = str(tmp_path / "clip.mp4")
  video_files.write_video(path, frames, Fraction(15))
  back, fps = video_files.read_video(path)
  assert back.shape == frames.shape and back.dtype == np.uint8
  assert fps == 15
  err = np.abs(back.astype(int) - frames.astype(int))
  assert err.mean() < 6.0  # crf 18 and 4:2:0 chroma: a few levels on smooth content
  # Frame order survives: each decoded frame is closest to its own source frame.
  dist = np.abs(back[:, None].astype(int) - frames[None].astype(int)).mean(axis=(2, 3, 4))
  np.testing.assert_array_equal(dist.argmin(axis=1), np.arange(len(frames)))


def test_read_resizes_and_stops_at_max_frames(tmp_path):
  path = str(tmp_path / "clip.mp4")
  video_files.write_video(path, smooth_frames(10, 40, 60), 10)
  back, _ = video_files.read_video(path, size=16, max_frames=4)
  assert back.shape == (4, 16, 16, 3)


def test_odd_sides_are_padded_by_repeating_the_edge(tmp_path):
  frames = smooth_frames(3, 31, 45)
  path = str(tmp_path / "odd.mp4")
  video_files.write_video(path, frames, 8)
  back, _ = video_files.read_video(path)
  assert back.shape == (3, 32, 46, 3)
  assert np.abs(back[:, :31, :45].astype(int) - frames.astype(int)).mean() < 6.0
  # The added row and column repeat their neighbours.
  assert np.abs(back[:, 31].astype(int) - back[:, 30].astype(int)).mean() < 6.0
  assert np.abs(back[:, :, 45].astype(int) - back[:, :, 44].astype(int)).mean() < 6.0


def test_audio_is_not_carried_over(tmp_path):
  """A source with a sound track: reading gives frames only, and what we write has no audio."""
  src = str(tmp_path / "with_audio.mp4")
  with av.open(src, mode="w") as c:
    v = c.add_stream("libx264", rate=10)
    v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
    a = c.add_stream("aac", rate=16000)
    for rgb in smooth_frames(5, 32, 32):
      for p in v.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
        c.mux(p)
    for p in v.encode(None):
      c.mux(p)
    tone = (0.1 * np.sin(np.arange(1024) / 5.0)).astype(np.float32)[None]
    frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
    frame.sample_rate = 16000
    for p in a.encode(frame):
      c.mux(p)
    for p in a.encode(None):
      c.mux(p)
  with av.open(src) as c:
    assert len(c.streams.audio) == 1
  frames, fps = video_files.read_video(src)
  out = str(tmp_path / "out.mp4")
  video_files.write_video(out, frames, fps)
  with av.open(out) as c:
    assert len(c.streams.audio) == 0 and len(c.streams.video) == 1


def test_unreadable_files_are_named(tmp_path):
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"certainly not a video")
  with pytest.raises(ValueError, match=r"bad\.mp4: cannot read video"):
    video_files.read_video(str(bad))
  good = tmp_path / "good.mp4"
  video_files.write_video(str(good), smooth_frames(6, 32, 32), 10)
  cut = tmp_path / "cut.mp4"
  cut.write_bytes(good.read_bytes()[:200])
  with pytest.raises(ValueError, match=r"cut\.mp4"):
    video_files.read_video(str(cut))


def test_write_rejects_frames_that_are_not_uint8_rgb(tmp_path):
  with pytest.raises(ValueError, match=r"x\.mp4: expected uint8 frames"):
    video_files.write_video(str(tmp_path / "x.mp4"), np.zeros((2, 8, 8, 3), np.float32), 10)
  with pytest.raises(ValueError, match="expected uint8 frames"):
    video_files.write_video(str(tmp_path / "x.mp4"), np.zeros((0, 8, 8, 3), np.uint8), 10)
  assert not (tmp_path / "x.mp4").exists()  # nothing half-written


def test_is_video_by_extension():
  assert video_files.is_video("a/B.MP4") and video_files.is_video("x.webm")
  assert not video_files.is_video("x.png") and not video_files.is_video("x.npy")


def test_iter_frames_decodes_lazily_and_probe_reads_the_header(tmp_path):
  path = str(tmp_path / "clip.mp4")
  frames = smooth_frames(9, 24, 40)
  video_files.write_video(path, frames, Fraction(12))
  info = video_files.probe(path)
  assert (info.width, info.height, info.fps, info.num_frames) == (40, 24, 12, 9)
  it = video_files.iter_frames(path)
  first = next(it)  # one frame decoded, not the video
  assert first.shape == (24, 40, 3) and first.dtype == np.uint8
  rest = list(it)
  assert len(rest) == 8
  np.testing.assert_array_equal(np.stack([first, *rest]), video_files.read_video(path)[0])
  assert len(list(video_files.iter_frames(path, max_frames=3, size=8))) == 3
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"certainly not a video")
  with pytest.raises(ValueError, match=r"bad\.mp4: cannot read video"):
    next(video_files.iter_frames(str(bad)))
  with pytest.raises(ValueError, match=r"bad\.mp4: cannot read video"):
    video_files.probe(str(bad))


def test_writer_streams_chunks_into_one_video(tmp_path):
  frames = smooth_frames(10, 32, 48)
  path = str(tmp_path / "streamed.mp4")
  with video_files.VideoWriter(path, 10) as writer:
    for start in range(0, 10, 3):  # chunks of 3, 3, 3, 1
      writer.write(frames[start : start + 3])
    writer.write(frames[-1])  # a single frame [H, W, 3] too
    assert writer.frames_written == 11
  back, fps = video_files.read_video(path)
  assert back.shape == (11, 32, 48, 3) and fps == 10
  assert np.abs(back[:10].astype(int) - frames.astype(int)).mean() < 6.0


def test_writer_leaves_no_partial_file_on_error(tmp_path):
  path = tmp_path / "partial.mp4"
  with pytest.raises(ValueError, match=r"partial\.mp4: frames of 16×16 after frames of 32×32"):
    with video_files.VideoWriter(str(path), 10) as writer:
      writer.write(smooth_frames(40, 32, 32))  # enough for packets to reach the file
      writer.write(smooth_frames(1, 16, 16))
  assert not path.exists()
  with pytest.raises(RuntimeError, match="boom"):
    with video_files.VideoWriter(str(path), 10) as writer:
      writer.write(smooth_frames(2, 32, 32))
      raise RuntimeError("boom")
  assert not path.exists()
  with pytest.raises(ValueError, match=r"partial\.mp4: no frame to write"):
    with video_files.VideoWriter(str(path), 10):
      pass
  assert not path.exists()


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_portrait_videos_come_out_upright(tmp_path, rotation):
  """Phones store portrait videos as landscape frames plus a display rotation; we drop that
  metadata, so the rotation is applied to the pixels."""
  upright = smooth_frames(3, 48, 32)  # what the viewer sees: 48 high, 32 wide
  # Stored so that rotating by `rotation` (counter-clockwise) shows `upright`.
  stored = np.ascontiguousarray(np.rot90(upright, k=-rotation // 90, axes=(1, 2)))
  path = str(tmp_path / "phone.mp4")
  with av.open(path, mode="w") as c:
    stream = c.add_stream("libx264", rate=10)
    stream.width, stream.height = stored.shape[2], stored.shape[1]
    stream.pix_fmt = "yuv420p"
    stream.set_display_rotation(rotation)
    for rgb in stored:
      for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
        c.mux(packet)
    for packet in stream.encode(None):
      c.mux(packet)
  frames = np.stack(list(video_files.iter_frames(path)))
  assert frames.shape == upright.shape
  assert np.abs(frames.astype(int) - upright.astype(int)).mean() < 6.0
  raw = np.stack(list(video_files.iter_frames(path, autorotate=False)))
  assert raw.shape == stored.shape
