"""What the real action-recognition video datasets (UCF101, HMDB51, PA-HMDB51) share.

Every video becomes one clip of T frames of S×S pixels, the same way for every dataset and split:

  * Frames: a video of n decoded frames gives the frames at indices

        f_i = ⌊(i + ½) · n / T⌋,   i = 0, …, T − 1,

    the middle frame of each of T equal segments covering the whole video (deterministic). A video
    shorter than T frames repeats frames (n = 3, T = 4 gives 0, 1, 1, 2).
  * Pixels: each sampled frame is `imaging.center_square`d (shorter side scaled to S, centre S×S).

A video FFmpeg cannot read stops the build with an error naming the file: silently skipping it
would change the evaluation set.

The TFDS builders (`ActionVideoBuilder` subclasses) read the files a user has put in a manual
directory (default ``<data_dir>/downloads/manual``; each dataset module documents its layout) and
store array_record files of uint8 tensors, so building and reading never import TensorFlow. One
builder config is one split ("train" or "test") of one official split number at one (T, S), so
loading the test split never decodes the training videos. Features of an example:

  ==========  ===================  ==============================================================
  clip        uint8 [T, S, S, 3]   the sampled frames (stored as raw bytes)
  label       int32                the action: index into the dataset's ``CLASSES``
  name        str                  ``<class folder>/<file name>`` of the source video
  privacy     float32 [P]          PA-HMDB51 only: multi-hot privacy attributes
  ==========  ===================  ==============================================================

Examples keep the dataset's list order (no shuffling). ``num_examples = n`` keeps n videos spread
evenly over that list (the frame formula again, over videos), so a small subset still covers the
classes. `load` reads a built split into a `records.Split` whose queries ask `ACTION_PROMPT` as a
multiple-choice question: the class name in words is the answer, every class name in words a
choice ("ApplyEyeMakeup" → "apply eye makeup", "brush_hair" → "brush hair").
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import av
import numpy as np
import tensorflow_datasets as tfds

from anonymax.data import imaging
from anonymax.data.builder import ArrayRecordBuilder
from anonymax.data.records import Split
from anonymax.data.synthetic_generator import ACTION_PROMPT
from anonymax.metrics import normalize_class_name
from anonymax.types import Query

__all__ = [
  "ACTION_PROMPT",
  "SPLITS",
  "SPLIT_NUMBERS",
  "ActionVideoBuilder",
  "ActionVideoConfig",
  "Video",
  "check_options",
  "class_words",
  "config_name",
  "load",
  "read_clip",
  "read_lines",
  "require_files",
  "sample_indices",
  "spread",
]

SPLITS = ("train", "test")
SPLIT_NUMBERS = (1, 2, 3)  # UCF101 and HMDB51 each come with three official train/test splits
_READ_CHUNK = 256  # records read at once by `load`


def sample_indices(num_frames: int, clip_length: int) -> np.ndarray:
  """int64 [T]: f_i = ⌊(i + ½)·n / T⌋, the middle frame of each of T equal segments of n frames."""
  if num_frames < 1 or clip_length < 1:
    raise ValueError(f"sample_indices: num_frames={num_frames} and clip_length={clip_length} >= 1")
  i = np.arange(clip_length, dtype=np.int64)
  return ((2 * i + 1) * int(num_frames)) // (2 * int(clip_length))  # exact integer arithmetic


def read_clip(path: str, *, clip_length: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Decodes `path`; returns the clip uint8 [T, S, S, 3] and its frame indices int64 [T].

  Raises:
    ValueError: naming `path`, when it is missing, not a readable video, or holds no frame.
  """
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise ValueError(f"{path}: no video stream")
      # The frame count is only known after decoding (AVI headers are unreliable), so keep the
      # decoded YUV frames and convert only the T sampled ones to RGB: about 60 % of the time of
      # converting every frame as `video_files.read_video` does (a 320×240 AVI of 180 frames).
      frames = list(container.decode(container.streams.video[0]))
      if not frames:
        raise ValueError(f"{path}: no decodable video frame")
      indices = sample_indices(len(frames), clip_length)
      clip = np.stack([imaging.center_square(frames[f].to_image(), image_size) for f in indices])
  except av.FFmpegError as e:  # missing file, not a video, truncated stream, unknown codec...
    raise ValueError(f"{path}: cannot read video ({type(e).__name__}: {e})") from e
  return clip, indices


def spread(items: Sequence, num: int | None) -> list:
  """`num` items spread evenly over `items` (all of them when num is None, 0 or >= len)."""
  if not num or num >= len(items):
    return list(items)
  return [items[i] for i in sample_indices(len(items), num)]


def class_words(names: Sequence[str]) -> tuple[str, ...]:
  """Class names in words, as the MLLM reads and answers them (`metrics.normalize_class_name`)."""
  return tuple(normalize_class_name(n) for n in names)


def read_lines(path: str) -> list[str]:
  """The lines of a text file (any line end), or a ValueError naming it."""
  try:
    with open(path, encoding="utf-8") as f:
      return f.read().splitlines()
  except OSError as e:
    raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not a UTF-8 text file ({e.reason})") from None


def require_files(dataset: str, expected: Mapping[str, str]) -> None:
  """Raises one ValueError naming every missing path of `expected` (path → what belongs there)."""
  missing = [f"{path} ({what})" for path, what in expected.items() if not os.path.exists(path)]
  if missing:
    raise ValueError(f"{dataset}: missing " + "; missing ".join(missing))


@dataclasses.dataclass(frozen=True)
class Video:
  """One source video of a split.

  Attributes:
    name: ``<class folder>/<file name>``.
    path: the file.
    label: index into the dataset's ``CLASSES``.
    annotation: per-video data of the dataset, if any (PA-HMDB51: the attribute spans).
  """

  name: str
  path: str
  label: int
  annotation: Any = None


def check_options(
  *, split: str, clip_length: int, image_size: int, num_examples: int | None, split_number=None
) -> None:
  """Raises a ValueError naming the first bad option."""
  if split not in SPLITS:
    raise ValueError(f"split={split!r}: must be one of {SPLITS}")
  for field, value in (("clip_length", clip_length), ("image_size", image_size)):
    if isinstance(value, bool) or int(value) != value or value < 1:
      raise ValueError(f"{field}={value!r}: must be an integer >= 1")
  if num_examples is not None and (int(num_examples) != num_examples or num_examples < 1):
    raise ValueError(f"num_examples={num_examples!r}: must be None (all) or an integer >= 1")
  if split_number is not None and split_number not in SPLIT_NUMBERS:
    raise ValueError(f"split_number={split_number!r}: must be one of {SPLIT_NUMBERS}")


def config_name(
  split: str, split_number: int, clip_length: int, image_size: int, num_examples: int, suffix=""
) -> str:
  """E.g. ``train_split1_clips8_s112`` (split_number 0 is left out; num_examples adds ``_n<N>``)."""
  parts = [split, f"split{split_number}" if split_number else "", f"clips{clip_length}"]
  parts += [f"s{image_size}", f"n{num_examples}" if num_examples else "", suffix]
  return "_".join(p for p in parts if p)


@dataclasses.dataclass
class ActionVideoConfig(tfds.core.BuilderConfig):
  """One split of a video dataset at one clip size; every field is encoded in the config name.

  Attributes:
    split: "train" or "test".
    split_number: the official split (1, 2 or 3); 0 where the dataset has a single division.
    clip_length: T frames per clip.
    image_size: S, the side of the square frames.
    num_examples: keep this many videos spread over the split; 0 keeps all.
  """

  split: str = "test"
  split_number: int = 1
  clip_length: int = 8
  image_size: int = 112
  num_examples: int = 0


def new_config(
  description: str,
  *,
  split: str,
  split_number: int | None,
  clip_length: int,
  image_size: int,
  num_examples: int | None,
  suffix: str = "",
  config_class: type[ActionVideoConfig] = ActionVideoConfig,
  **extra,
) -> ActionVideoConfig:
  """A validated `config_class` whose name encodes every option (`config_name` + `suffix`).

  `split_number` None is a dataset with a single division (stored as 0); `extra` are the
  subclass's own fields, validated by the caller.
  """
  check_options(
    split=split,
    split_number=split_number,
    clip_length=clip_length,
    image_size=image_size,
    num_examples=num_examples,
  )
  n, number = int(num_examples or 0), int(split_number or 0)
  return config_class(
    name=config_name(split, number, clip_length, image_size, n, suffix),
    description=description,
    split=split,
    split_number=number,
    clip_length=int(clip_length),
    image_size=int(image_size),
    num_examples=n,
    **extra,
  )


def registered(
  configs: Sequence[ActionVideoConfig], config: ActionVideoConfig
) -> ActionVideoConfig:
  """The registered config named like `config` if there is one (TFDS matches by identity), else it."""
  return next((c for c in configs if c.name == config.name), config)


def require_videos(videos: Sequence[Video], where: str, what: str, hint: str) -> None:
  """Raises "<where>: <n> <what> not found, e.g. <path> (<hint>)" if any video file is missing."""
  missing = [v.path for v in videos if not os.path.isfile(v.path)]
  if missing:
    raise ValueError(f"{where}: {len(missing)} {what} not found, e.g. {missing[0]} ({hint})")


class ActionVideoBuilder(ArrayRecordBuilder, skip_registration=True):
  """Base of the video builders: subclasses set `CLASSES`, `LAYOUT`, `MANUAL_DOWNLOAD_INSTRUCTIONS`
  and implement `list_videos` (and `extra_features`/`extra_values` for more features)."""

  CLASSES: tuple[str, ...] = ()
  LAYOUT = ""  # one line: what goes where in the manual directory

  def list_videos(self, root: str) -> list[Video]:
    """The videos of this config's split, in dataset order, checked to exist under `root`."""
    raise NotImplementedError

  def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
    return {}

  def extra_values(self, video: Video, frame_indices: np.ndarray) -> dict[str, Any]:
    del video, frame_indices
    return {}

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    s = cfg.image_size
    clip = tfds.features.Tensor(
      shape=(cfg.clip_length, s, s, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
    )
    features = {
      "clip": clip,
      "label": tfds.features.Tensor(shape=(), dtype=np.int32),
      "name": tfds.features.Tensor(shape=(), dtype=np.object_),
      **self.extra_features(),
    }
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(features),
      # Keep the dataset's order: `load` returns the split's list order.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    try:
      root = os.fspath(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS: the manual directory does not exist or is empty
      reason = str(e).split(". ")[0]
      raise ValueError(f"{self.name}: {reason}; expected there: {self.LAYOUT}") from None
    cfg = self.builder_config
    videos = spread(self.list_videos(root), cfg.num_examples)
    return {cfg.split: self._generate_examples(videos)}

  def _generate_examples(self, videos: list[Video]):
    cfg = self.builder_config
    for i, video in enumerate(videos):
      clip, frame_indices = read_clip(
        video.path, clip_length=cfg.clip_length, image_size=cfg.image_size
      )
      example = {"clip": clip, "label": np.int32(video.label), "name": video.name}
      yield i, {**example, **self.extra_values(video, frame_indices)}


def load(
  builder_cls: type[ActionVideoBuilder],
  config: ActionVideoConfig,
  split: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  attribute_names: tuple[str, ...] = (),
) -> Split:
  """Builds `config` if needed (from `manual_dir`) and reads `split` (e.g. "test[:10]") as a Split.

  Without attribute_names the Split's privacy is float32 [N, 0]: the dataset has no privacy labels.
  """
  builder = builder_cls(config=config, data_dir=data_dir)
  if not builder.is_prepared():
    root = os.fspath(manual_dir or os.path.join(builder.data_dir_root, "downloads", "manual"))
    if not os.path.isdir(root) or not os.listdir(root):
      raise ValueError(
        f"{builder.name}: manual directory {root} is missing or empty; expected there: "
        f"{builder_cls.LAYOUT}"
      )
    download_config = tfds.download.DownloadConfig(manual_dir=root, try_download_gcs=False)
    builder.download_and_prepare(download_config=download_config)
  source = builder.as_data_source(split=split)
  n, t, s = len(source), config.clip_length, config.image_size
  # Filled chunk by chunk: a whole UCF101 training split is gigabytes, a list of it twice that.
  visuals = np.empty((n, t, s, s, 3), np.uint8)
  labels = np.empty(n, np.int32)
  privacy = np.zeros((n, len(attribute_names)), np.float32)  # [N, 0] without privacy labels
  for start in range(0, n, _READ_CHUNK):
    for i, record in enumerate(source.__getitems__(range(start, min(n, start + _READ_CHUNK)))):
      visuals[start + i] = record["clip"]
      labels[start + i] = record["label"]
      if attribute_names:
        privacy[start + i] = record["privacy"]
  words = class_words(builder_cls.CLASSES)
  return Split(
    visuals=visuals,
    privacy=privacy,
    queries=[Query(ACTION_PROMPT, (words[label],), words) for label in labels],
    labels=labels,
    attribute_names=tuple(attribute_names),
    class_names=tuple(builder_cls.CLASSES),
  )
