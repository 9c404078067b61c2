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

Two views of the same build (`load_split`'s ``frames``):
  * clips (the default): uint8 [N, T, S, S, 3], each with its clip-level privacy label (an
    attribute is present if it is on one of the T sampled frames) and its action; what the
    black box answers on.
  * frames: the same N·T sampled frames as images [N·T, S, S, 3], each with its own frame-level
    label (`privacy_labels` of that frame alone) and its video's action. The privacy judges of
    the HMDB51-VISPR protocol are image classifiers trained on VISPR images, so they are scored
    here, frame by frame, as Wu et al. (TPAMI 2020) score them on PA-HMDB51's frames. Their
    labels are the five `ATTRIBUTES`; `vispr`'s ``attributes="pa_hmdb51"`` gives VISPR's labels
    in the same five columns (the mapping and why: `anonymax.data.vispr`).
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
  """TFDS builder of PA-HMDB51 clips (``anonymax_pa_hmdb51``): the test split only.

  Besides the clip's label (``privacy`` [P]) it stores each sampled frame's (``frame_privacy``
  [T, P]), which the frames view reads.
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release.",
    "1.1.0": "frame_privacy: the privacy label of each sampled frame.",
  }
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
    t, p = self.builder_config.clip_length, len(ATTRIBUTES)
    return {
      "privacy": tfds.features.Tensor(shape=(p,), dtype=np.float32),
      "frame_privacy": tfds.features.Tensor(shape=(t, p), dtype=np.float32),
    }

  def extra_values(self, video: Video, frame_indices: np.ndarray):
    spans = video.annotation
    return {
      "privacy": privacy_labels(spans, frame_indices),
      "frame_privacy": np.stack([privacy_labels(spans, [f]) for f in frame_indices]),
    }


def load_split(
  split: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  clip_length: int = 8,
  image_size: int = 112,
  num_examples: int | None = None,
  frames: bool = False,
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
    frames: the frames view instead (see the module docstring): images [N·T, S, S, 3], video by
      video, each with its own frame's privacy label.

  Returns:
    The Split: labels index `hmdb51.CLASSES`, queries ask for the action among
    `hmdb51.CLASS_WORDS`, privacy holds the clip (or frame) labels in `ATTRIBUTES` order.
  """
  if not isinstance(frames, bool):
    raise ValueError(f"frames={frames!r}: must be True or False")
  if split.split("[")[0] != "test":
    raise ValueError(
      f"split={split!r}: PA-HMDB51 has only a 'test' split (it is an evaluation set; train on "
      "HMDB51 with exclude_pa_hmdb51=True)"
    )
  cfg = make_config(clip_length=clip_length, image_size=image_size, num_examples=num_examples)
  clips = action_videos.load(
    AnonymaxPaHmdb51,
    cfg,
    split,
    data_dir=data_dir,
    manual_dir=manual_dir,
    attribute_names=ATTRIBUTES,
  )
  return _frames_of(clips, cfg, split, data_dir) if frames else clips


def _frames_of(clips: Split, cfg: ActionVideoConfig, split: str, data_dir: str | None) -> Split:
  """The frames view of a loaded clip split: frame i·T + t is frame t of clip i."""
  source = AnonymaxPaHmdb51(config=cfg, data_dir=data_dir).as_data_source(split=split)
  n, t = len(clips), cfg.clip_length
  labels = np.array([r["frame_privacy"] for r in source.__getitems__(range(n))], np.float32)
  return Split(
    visuals=clips.visuals.reshape(n * t, *clips.visuals.shape[2:]),
    privacy=labels.reshape(n * t, len(ATTRIBUTES)),
    queries=[q for q in clips.queries for _ in range(t)],
    labels=np.repeat(clips.labels, t),
    attribute_names=clips.attribute_names,
    class_names=clips.class_names,
  )
