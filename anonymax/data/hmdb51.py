"""HMDB51 (Kuehne et al., 2011): 6,766 clips of 51 actions from movies and web videos, three splits.

Manual directory (from https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/):

  ==================================================  =========================================
  hmdb51/<class>/<video>.avi                          hmdb51_org.rar, then each <class>.rar in it
  testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt   test_train_splits.rar
  ==================================================  =========================================

(the same directory serves `pa_hmdb51`, whose annotations go beside these). A split file lists
every video of its class, one "<video>.avi <id>" line each (a space may trail the id): id 1 =
train, 2 = test, 0 = in neither; each class has 70 train and 30 test videos per split. Classes are
the 51 folder names, sorted (`CLASSES`); a split file is required for each of them.

``exclude_pa_hmdb51`` drops the videos annotated by PA-HMDB51 (its ``PrivacyAttributes/*.json``
must then be in the manual directory too): in the HMDB51-VISPR protocol of Wu et al. (TPAMI 2020)
PA-HMDB51 is the test set and the other HMDB51 videos are for training, so a model trained on
HMDB51 must not see those videos.

Clips and features: see `action_videos`.
"""

from __future__ import annotations

import dataclasses
import os

from anonymax.data import action_videos
from anonymax.data.action_videos import ActionVideoBuilder, ActionVideoConfig, Video
from anonymax.data.hmdb51_classes import CLASS_WORDS, CLASSES, VIDEOS_DIR
from anonymax.data.pa_hmdb51_annotations import read_annotations
from anonymax.data.records import Split

__all__ = [
  "CLASSES",
  "CLASS_WORDS",
  "VIDEOS_DIR",
  "AnonymaxHmdb51",
  "Hmdb51Config",
  "list_videos",
  "load_split",
  "make_config",
]

SPLITS_DIR = "testTrainMulti_7030_splits"
SPLIT_IDS = {"train": "1", "test": "2"}  # and "0": the video is in neither set


def split_file(root: str, name: str, split_number: int) -> str:
  return os.path.join(root, SPLITS_DIR, f"{name}_test_split{split_number}.txt")


def list_videos(
  root: str, split: str, split_number: int, *, exclude: frozenset[str] = frozenset()
) -> list[Video]:
  """The videos of `split` in official split `split_number`: by class, then in split-file order.

  Args:
    root: the manual directory.
    split: "train" or "test".
    split_number: 1, 2 or 3.
    exclude: file names to leave out.
  """
  action_videos.require_files(
    "hmdb51",
    {
      os.path.join(root, VIDEOS_DIR): "the videos, one folder per class: unpack hmdb51_org.rar, "
      "then each <class>.rar in it, here",
      os.path.join(root, SPLITS_DIR): "the split files: unpack test_train_splits.rar here",
    },
  )
  files = [split_file(root, name, split_number) for name in CLASSES]
  action_videos.require_files(
    "hmdb51", {f: f"a class's split-{split_number} file, from test_train_splits.rar" for f in files}
  )
  videos = []
  for label, (name, path) in enumerate(zip(CLASSES, files)):
    for lineno, line in enumerate(action_videos.read_lines(path), 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 2 or fields[1] not in ("0", "1", "2") or "/" in fields[0]:
        raise ValueError(f"{path}:{lineno}: expected '<video>.avi <0|1|2>', got {line!r}")
      if fields[1] == SPLIT_IDS[split] and fields[0] not in exclude:
        video_path = os.path.join(root, VIDEOS_DIR, name, fields[0])
        videos.append(Video(f"{name}/{fields[0]}", video_path, label))
  action_videos.require_videos(
    videos,
    "hmdb51",
    "video(s) of the split files",
    f"unpack hmdb51_org.rar and each <class>.rar in it into {os.path.join(root, VIDEOS_DIR)}",
  )
  return videos


@dataclasses.dataclass
class Hmdb51Config(ActionVideoConfig):
  """`ActionVideoConfig` plus exclude_pa_hmdb51: leave out the videos PA-HMDB51 annotates."""

  exclude_pa_hmdb51: bool = False


def _new_config(
  split, split_number, clip_length, image_size, num_examples, exclude_pa_hmdb51
) -> Hmdb51Config:
  if not isinstance(exclude_pa_hmdb51, bool):
    raise ValueError(f"exclude_pa_hmdb51={exclude_pa_hmdb51!r}: must be True or False")
  return action_videos.new_config(
    f"HMDB51 {split} set of split {split_number}, {clip_length} frames, {image_size}px"
    + (", without the PA-HMDB51 videos" if exclude_pa_hmdb51 else ""),
    split=split,
    split_number=split_number,
    clip_length=clip_length,
    image_size=image_size,
    num_examples=num_examples,
    suffix="nopa" if exclude_pa_hmdb51 else "",
    config_class=Hmdb51Config,
    exclude_pa_hmdb51=exclude_pa_hmdb51,
  )


# The registered variants: the paper's protocol at T = 8, 112 px, official split 1.
_DEFAULT_CONFIGS = tuple(_new_config(s, 1, 8, 112, None, False) for s in action_videos.SPLITS)


def make_config(
  *,
  split: str = "test",
  split_number: int = 1,
  clip_length: int = 8,
  image_size: int = 112,
  num_examples: int | None = None,
  exclude_pa_hmdb51: bool = False,
) -> Hmdb51Config:
  """A validated config named e.g. ``train_split1_clips8_s112[_nopa]`` (registered instance if any)."""
  cfg = _new_config(split, split_number, clip_length, image_size, num_examples, exclude_pa_hmdb51)
  return action_videos.registered(_DEFAULT_CONFIGS, cfg)


class AnonymaxHmdb51(ActionVideoBuilder):
  """TFDS builder of HMDB51 clips (``anonymax_hmdb51``), one config per split; see the module."""

  BUILDER_CONFIGS = list(_DEFAULT_CONFIGS)
  CLASSES = CLASSES
  LAYOUT = (
    f"{VIDEOS_DIR}/<class>/<video>.avi (hmdb51_org.rar, then each <class>.rar in it, unpacked) "
    f"and {SPLITS_DIR}/<class>_test_split{{1,2,3}}.txt (test_train_splits.rar unpacked), from "
    "https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/"
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put in the manual directory: {LAYOUT}."

  def list_videos(self, root: str) -> list[Video]:
    cfg = self.builder_config
    exclude = frozenset()
    if cfg.exclude_pa_hmdb51:
      exclude = frozenset(name.split("/")[1] for name in read_annotations(root))
    return list_videos(root, cfg.split, cfg.split_number, exclude=exclude)


def load_split(
  split: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  clip_length: int = 8,
  image_size: int = 112,
  split_number: int = 1,
  num_examples: int | None = None,
  exclude_pa_hmdb51: bool = False,
) -> Split:
  """An HMDB51 split as clips uint8 [N, T, S, S, 3], built from `manual_dir` on first use.

  Args:
    split: "train" or "test", optionally sliced ("train[:100]").
    data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    manual_dir: where the HMDB51 files are (default: <data_dir>/downloads/manual).
    clip_length: T frames per clip.
    image_size: S.
    split_number: the official split, 1, 2 or 3.
    num_examples: keep this many videos spread evenly over the split (None: all).
    exclude_pa_hmdb51: leave out the videos PA-HMDB51 annotates (see the module).

  Returns:
    The Split: labels index `CLASSES`, queries ask for the action among `CLASS_WORDS`, privacy is
    float32 [N, 0] (HMDB51 has no privacy labels).
  """
  cfg = make_config(
    split=split.split("[")[0],
    split_number=split_number,
    clip_length=clip_length,
    image_size=image_size,
    num_examples=num_examples,
    exclude_pa_hmdb51=exclude_pa_hmdb51,
  )
  return action_videos.load(AnonymaxHmdb51, cfg, split, data_dir=data_dir, manual_dir=manual_dir)
