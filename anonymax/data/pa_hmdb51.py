"""PA-HMDB51 (Wu et al., TPAMI 2020): HMDB51 videos with frame-level privacy attribute labels.

The evaluation set of the HMDB51-VISPR protocol: action Top-1 and privacy cMAP on the same videos.
Manual directory:

  ==============================  ==============================================================
  hmdb51/<class>/<video>.avi      the HMDB51 videos, as for `hmdb51`
  PrivacyAttributes/<class>.json  https://github.com/VITA-Group/PA-HMDB51 (PrivacyAttributes/)
  ==============================  ==============================================================

The annotation files, their values and how they become a clip's privacy label are described in
`pa_hmdb51_annotations` (which reads them; its names are re-exported here).

Splits: the release has no train/test division; all its videos form the "test" split (Wu et al.
train on the other HMDB51 videos, see `hmdb51`'s exclude_pa_hmdb51). Actions are the HMDB51
classes (`hmdb51.CLASSES`, from `hmdb51_classes`), so labels mean the same as HMDB51's.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from anonymax.data import action_videos
from anonymax.data.action_videos import ActionVideoBuilder, ActionVideoConfig, Video
from anonymax.data.hmdb51_classes import CLASSES, VIDEOS_DIR
from anonymax.data.pa_hmdb51_annotations import (
  ANNOTATIONS_DIR,
  ATTRIBUTES,
  Spans,
  parse_spans,
  privacy_labels,
  read_annotations,
)
from anonymax.data.records import Split

__all__ = [
  "ANNOTATIONS_DIR",
  "ATTRIBUTES",
  "AnonymaxPaHmdb51",
  "Spans",
  "list_videos",
  "load_split",
  "make_config",
  "parse_spans",
  "privacy_labels",
  "read_annotations",
]


def list_videos(root: str) -> list[Video]:
  """The annotated videos (sorted by class, then name), checked to exist under hmdb51/."""
  videos = [
    Video(name, os.path.join(root, VIDEOS_DIR, *name.split("/")), label, spans)
    for name, (label, spans) in read_annotations(root).items()
  ]
  action_videos.require_videos(
    videos,
    "pa_hmdb51",
    "annotated video(s)",
    f"the HMDB51 videos go to {os.path.join(root, VIDEOS_DIR)}, see anonymax.data.hmdb51",
  )
  return videos


def _new_config(clip_length, image_size, num_examples) -> ActionVideoConfig:
  return action_videos.new_config(
    f"PA-HMDB51, {clip_length} frames, {image_size}px",
    split="test",
    split_number=None,
    clip_length=clip_length,
    image_size=image_size,
    num_examples=num_examples,
  )


# The registered variant: the paper's protocol at T = 8, 112 px.
_DEFAULT_CONFIGS = (_new_config(8, 112, None),)


def make_config(
  *, clip_length: int = 8, image_size: int = 112, num_examples: int | None = None
) -> ActionVideoConfig:
  """A validated config named e.g. ``test_clips8_s112`` (the registered instance if any)."""
  cfg = _new_config(clip_length, image_size, num_examples)
  return action_videos.registered(_DEFAULT_CONFIGS, cfg)


class AnonymaxPaHmdb51(ActionVideoBuilder):
  """TFDS builder of PA-HMDB51 clips (``anonymax_pa_hmdb51``): the test split only."""

  BUILDER_CONFIGS = list(_DEFAULT_CONFIGS)
  CLASSES = CLASSES
  LAYOUT = (
    f"{VIDEOS_DIR}/<class>/<video>.avi (the HMDB51 videos, see anonymax.data.hmdb51) and "
    f"{ANNOTATIONS_DIR}/<class>.json (github.com/VITA-Group/PA-HMDB51, folder PrivacyAttributes)"
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put in the manual directory: {LAYOUT}."

  def list_videos(self, root: str) -> list[Video]:
    return list_videos(root)

  def extra_features(self):
    return {"privacy": tfds.features.Tensor(shape=(len(ATTRIBUTES),), dtype=np.float32)}

  def extra_values(self, video: Video, frame_indices: np.ndarray):
    return {"privacy": privacy_labels(video.annotation, frame_indices)}


def load_split(
  split: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  clip_length: int = 8,
  image_size: int = 112,
  num_examples: int | None = None,
) -> Split:
  """PA-HMDB51 as clips uint8 [N, T, S, S, 3] with privacy float32 [N, 5], built on first use.

  Args:
    split: "test", optionally sliced ("test[:100]"); there is no training split.
    data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    manual_dir: where the HMDB51 videos and the annotations are (default:
      <data_dir>/downloads/manual).
    clip_length: T frames per clip.
    image_size: S.
    num_examples: keep this many videos spread evenly over the set (None: all).

  Returns:
    The Split: labels index `hmdb51.CLASSES`, queries ask for the action among
    `hmdb51.CLASS_WORDS`, privacy holds the clip labels in `ATTRIBUTES` order.
  """
  if split.split("[")[0] != "test":
    raise ValueError(
      f"split={split!r}: PA-HMDB51 has only a 'test' split (it is an evaluation set; train on "
      "HMDB51 with exclude_pa_hmdb51=True)"
    )
  cfg = make_config(clip_length=clip_length, image_size=image_size, num_examples=num_examples)
  return action_videos.load(
    AnonymaxPaHmdb51,
    cfg,
    split,
    data_dir=data_dir,
    manual_dir=manual_dir,
    attribute_names=ATTRIBUTES,
  )
