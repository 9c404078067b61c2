"""PA-HMDB51's privacy annotations: reading the release's JSON files and labelling a clip.

Read by `pa_hmdb51` (the dataset) and by `hmdb51` (to leave PA-HMDB51's videos out of HMDB51's
training set) without either importing the other's builder.

One JSON file per HMDB51 action, ``<manual dir>/PrivacyAttributes/<class>.json`` (classes: see
`hmdb51_classes`), maps each annotated video's file name to its labels:

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

Which VISPR attributes these five stand for (so that judges trained on VISPR can be scored here)
is `anonymax.data.vispr.PA_HMDB51_ATTRIBUTES`, the one place that mapping is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from anonymax.data import action_videos
from anonymax.data.hmdb51_classes import CLASSES

__all__ = [
  "ANNOTATIONS_DIR",
  "ATTRIBUTES",
  "Spans",
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
  """``<class>/<video>`` → (class index into `CLASSES`, spans), sorted by class then name."""
  source = "from github.com/VITA-Group/PA-HMDB51, folder PrivacyAttributes"
  action_videos.require_files(
    "pa_hmdb51", {os.path.join(root, ANNOTATIONS_DIR): f"the annotation files, {source}"}
  )
  files = {name: os.path.join(root, ANNOTATIONS_DIR, f"{name}.json") for name in CLASSES}
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
