"""PA-HMDB51 (Wu et al., TPAMI 2020): HMDB51 videos with frame-level privacy attribute labels.

The evaluation set of the HMDB51-VISPR protocol: action Top-1 and privacy cMAP on the same videos.
Manual directory:

  ==============================  ==============================================================
  hmdb51/<class>/<video>.avi      the HMDB51 videos, as for `hmdb51`
  PrivacyAttributes/<class>.json  https://github.com/VITA-Group/PA-HMDB51 (PrivacyAttributes/)
  ==============================  ==============================================================

One JSON file per HMDB51 action maps each annotated video's file name to its labels:

  {"<video>.avi": {"skin_color": [[s, e, v], ...], "face": [...], "gender": [...],
                   "nudity": [...], "relationship": [...], "review": true, "note": ""}}

[s, e, v]: frames s..e (0-based, both included) have value v. The values (the release's README
and its annotation viewer):

  ============  =========================================================================
  skin_color    0 unidentifiable, 1 white, 2 brown/yellow, 3 black; a list ([1, 3]) when
                people of several skin colours are visible
  face          0 invisible (< 10 % visible), 1 partial (10-70 %), 2 complete (> 70 %)
  gender        0 unidentifiable, 1 male, 2 female; [1, 2] for both
  nudity        0 long sleeves and pants, 1 short sleeves or shorts/skirt, 2 semi-nudity
  relationship  0 cannot be told, 1 can be told
  ============  =========================================================================

"review" (the annotation tool's reviewed flag) and "note" are not used: every listed video is.

Privacy label: one binary value per attribute (`ATTRIBUTES` order), 1 iff v ≠ 0 (a list counts
when one of its values is ≠ 0). Since the labels are frame-level and a clip shows only its T
sampled frames (`action_videos.sample_indices`), an attribute is present in a clip iff one of those
frames lies in a span with v ≠ 0. A frame in no span counts as 0 (some spans start at frame 1),
except after an attribute's last annotated frame, where it takes that frame's value: decoders may
count a frame more than the annotation tool did.

Splits: the release has no train/test division; all its videos form the "test" split (Wu et al.
train on the other HMDB51 videos, see `hmdb51`'s exclude_pa_hmdb51). Actions are the HMDB51
classes (`hmdb51.CLASSES`), so labels mean the same as HMDB51's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

from anonymax.data import action_videos, hmdb51
from anonymax.data.action_videos import ActionVideoBuilder, ActionVideoConfig, Video
from anonymax.data.pipeline import Split

__all__ = [
  "ATTRIBUTES",
  "AnonymaxPaHmdb51",
  "list_videos",
  "load_split",
  "make_config",
  "parse_spans",
  "privacy_labels",
  "read_annotations",
]

ATTRIBUTES = ("skin_color", "face", "gender", "nudity", "relationship")
ANNOTATIONS_DIR = "PrivacyAttributes"
Spans = dict[str, list[tuple[int, int, tuple[int, ...]]]]  # attribute → [(start, end, values)]


def _span(span) -> tuple[int, int, tuple[int, ...]] | None:
  """(start, end, values) of a well-formed ``[start, end, value or [values]]``, else None."""
  if not isinstance(span, list) or len(span) != 3:
    return None
  start, end, value = span
  values = tuple(value) if isinstance(value, list) else (value,)
  if not values or any(type(x) is not int for x in (start, end, *values)):
    return None
  return (start, end, values) if 0 <= start <= end else None


def parse_spans(entry, where: str) -> Spans:
  """The five attributes' spans of one video's entry, or a ValueError naming `where`.

  Spans may leave frames uncovered (e.g. one starting at frame 1): those frames count as 0.
  """
  if not isinstance(entry, dict):
    raise ValueError(f"{where}: expected an object of attribute spans, got {type(entry).__name__}")
  spans = {}
  for attr in ATTRIBUTES:
    raw = entry.get(attr)
    if not isinstance(raw, list) or not raw:
      raise ValueError(f"{where}: {attr!r} must be a non-empty list of [start, end, value] spans")
    spans[attr] = [_span(span) for span in raw]
    for span, parsed in zip(raw, spans[attr]):
      if parsed is None:
        raise ValueError(f"{where}: {attr} span {span!r} is not [start <= end, value or [values]]")
  return spans


def read_annotations(root: str) -> dict[str, tuple[int, Spans]]:
  """``<class>/<video>`` → (class index into `hmdb51.CLASSES`, spans), sorted by class then name."""
  source = "from github.com/VITA-Group/PA-HMDB51, folder PrivacyAttributes"
  action_videos.require_files(
    "pa_hmdb51", {os.path.join(root, ANNOTATIONS_DIR): f"the annotation files, {source}"}
  )
  files = {name: os.path.join(root, ANNOTATIONS_DIR, f"{name}.json") for name in hmdb51.CLASSES}
  action_videos.require_files(
    "pa_hmdb51", {path: f"an action's annotation file, {source}" for path in files.values()}
  )
  out = {}
  for label, (name, path) in enumerate(files.items()):
    try:
      with open(path, encoding="utf-8") as f:
        data = json.load(f)
    except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError included
      raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict):
      raise ValueError(f"{path}: expected an object mapping video names to labels")
    for video in sorted(data):
      if "/" in video or not video.endswith(".avi"):
        raise ValueError(f"{path}: {video!r} is not an HMDB51 video file name")
      out[f"{name}/{video}"] = (label, parse_spans(data[video], f"{path}: {video}"))
  return out


def privacy_labels(spans: Spans, frame_indices: Sequence[int]) -> np.ndarray:
  """float32 [len(ATTRIBUTES)]: 1 where a span with a value ≠ 0 holds one of `frame_indices`."""
  out = np.zeros(len(ATTRIBUTES), np.float32)
  for j, attr in enumerate(ATTRIBUTES):
    last = max(end for _, end, _ in spans[attr])
    for f in frame_indices:
      f = min(int(f), last)
      if any(s <= f <= e and any(values) for s, e, values in spans[attr]):
        out[j] = 1.0
        break
  return out


def list_videos(root: str) -> list[Video]:
  """The annotated videos (sorted by class, then name), checked to exist under hmdb51/."""
  videos = [
    Video(name, os.path.join(root, hmdb51.VIDEOS_DIR, *name.split("/")), label, spans)
    for name, (label, spans) in read_annotations(root).items()
  ]
  action_videos.require_videos(
    videos,
    "pa_hmdb51",
    "annotated video(s)",
    f"the HMDB51 videos go to {os.path.join(root, hmdb51.VIDEOS_DIR)}, see anonymax.data.hmdb51",
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
  CLASSES = hmdb51.CLASSES
  LAYOUT = (
    f"{hmdb51.VIDEOS_DIR}/<class>/<video>.avi (the HMDB51 videos, see anonymax.data.hmdb51) and "
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
