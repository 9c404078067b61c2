"""Tests of anonymax.data.pa_hmdb51 on a tiny PA-HMDB51 in the real layout (videos, JSON spans)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from fractions import Fraction

import numpy as np
import pytest

from anonymax.data import action_videos, hmdb51, pa_hmdb51, pipeline, video_files
from anonymax.types import Query
from tests.data.video_fixtures import frame_ids, frames_of

T, S = 4, 16
A, B, C = (
  "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
  "brush_hair/Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi",
  "shake_hands/Meet_shake_hands_u_cm_np2_le_med_1.avi",
)
FRAMES = {A: 10, B: 3, C: 8, "brush_hair/not_annotated_brush_hair_u_nm_np1_fr_goo_0.avi": 5}
# Spans [start, end, value] as the release writes them, with the clips' sampled frames
# (sample_indices: 10 frames → 1 3 6 8; 3 → 0 1 1 2; 8 → 1 3 5 7) and the labels they give.
LABELS = {
  A: {
    "skin_color": [[0, 9, 1]],  # white throughout: 1
    "face": [[0, 2, 0], [3, 5, 2], [6, 9, 0]],  # complete on frame 3: 1
    "gender": [[0, 9, [1, 2]]],  # male and female: 1
    "nudity": [[0, 0, 2], [1, 9, 0]],  # semi-nudity on frame 0 only, not sampled: 0
    "relationship": [[0, 9, 0]],  # 0
  },
  B: {
    "skin_color": [[0, 2, 0]],  # 0
    "face": [[0, 0, 1], [1, 2, 0]],  # partial on frame 0: 1
    "gender": [[0, 2, 0]],  # 0
    "nudity": [[0, 2, 1]],  # 1
    "relationship": [[0, 1, 0], [2, 2, 1]],  # 1 on frame 2
  },
  C: {  # annotated up to frame 6 or 5 only: frame 7 takes the last annotated value
    "skin_color": [[0, 5, [1, 3]]],  # 1
    "face": [[0, 5, 0], [6, 6, 2]],  # only the clamped frame 7 → 6 sees it: 1
    "gender": [[0, 5, 1]],  # 1
    "nudity": [[0, 1, 0], [2, 5, 0]],  # 0
    "relationship": [[0, 5, 0]],  # 0
  },
}
EXPECTED = {A: [1, 1, 1, 0, 0], B: [0, 1, 0, 1, 1], C: [1, 1, 1, 0, 0]}


def write_pa_hmdb51(root) -> None:
  for v, (name, n) in enumerate(FRAMES.items()):
    os.makedirs(os.path.dirname(f"{root}/hmdb51/{name}"), exist_ok=True)
    video_files.write_video(f"{root}/hmdb51/{name}", frames_of(v, n), Fraction(30), codec="mpeg4")
  os.makedirs(f"{root}/PrivacyAttributes")
  for cls in hmdb51.CLASSES:  # one file per action, as released ("{}" where none is annotated)
    entries = {
      name.split("/")[1]: {**spans, "review": name != C, "note": ""}
      for name, spans in LABELS.items()
      if name.startswith(f"{cls}/")
    }
    with open(f"{root}/PrivacyAttributes/{cls}.json", "w") as f:
      json.dump(entries, f, indent=4)


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("pa_hmdb51_manual"))
  write_pa_hmdb51(root)
  return root


def load(manual, data_dir, split="test", **kw):
  kw = {"clip_length": T, "image_size": S, **kw}
  return pa_hmdb51.load_split(split, data_dir=data_dir, manual_dir=manual, **kw)


def test_privacy_labels_from_sampled_frames():
  spans = pa_hmdb51.parse_spans(LABELS[A], "x")
  assert pa_hmdb51.privacy_labels(spans, [1, 3, 6, 8]).tolist() == EXPECTED[A]
  assert pa_hmdb51.privacy_labels(spans, [0]).tolist() == [1, 0, 1, 1, 0]  # the nudity frame
  assert pa_hmdb51.privacy_labels(spans, [7, 9]).tolist() == [1, 0, 1, 0, 0]
  assert pa_hmdb51.privacy_labels(spans, [50]).tolist() == [1, 0, 1, 0, 0]  # past the end → 9
  gap = pa_hmdb51.parse_spans({**LABELS[A], "nudity": [[1, 9, 1]]}, "x")  # frame 0 in no span
  assert pa_hmdb51.privacy_labels(gap, [0])[3] == 0 and pa_hmdb51.privacy_labels(gap, [1])[3] == 1


def test_clips_privacy_labels_and_actions(manual, data_dir):
  data = load(manual, data_dir)
  names = [A, B, C]  # sorted by class, then name; the unannotated video is not in the set
  assert data.visuals.shape == (3, T, S, S, 3) and data.visuals.dtype == np.uint8
  assert data.privacy.dtype == np.float32
  assert data.privacy.tolist() == [EXPECTED[n] for n in names]
  assert (
    data.attribute_names
    == pa_hmdb51.ATTRIBUTES
    == (
      "skin_color",
      "face",
      "gender",
      "nudity",
      "relationship",
    )
  )
  assert data.class_names == hmdb51.CLASSES
  labels = [hmdb51.CLASSES.index(n.split("/")[0]) for n in names]
  assert data.labels.tolist() == labels == [0, 0, 33]
  for q, label in zip(data.queries, labels):
    assert q == Query(action_videos.ACTION_PROMPT, (hmdb51.CLASS_WORDS[label],), hmdb51.CLASS_WORDS)
  for clip, name in zip(data.visuals, names):
    want = action_videos.sample_indices(FRAMES[name], T).tolist()
    assert frame_ids(clip) == (list(FRAMES).index(name), want)
  assert "tensorflow" not in sys.modules


def test_pipeline_dispatch_test_only_and_subset(manual, data_dir):
  data = pipeline.load_split(
    "pa_hmdb51", "test", data_dir=data_dir, manual_dir=manual, clip_length=T, image_size=S
  )
  np.testing.assert_array_equal(data.privacy, load(manual, data_dir).privacy)
  with pytest.raises(ValueError, match=r"^split='train': PA-HMDB51 has only a 'test' split"):
    load(manual, data_dir, "train")
  assert load(manual, data_dir, "test[1:]").labels.tolist() == [0, 33]
  assert load(manual, data_dir, num_examples=2).privacy.tolist() == [EXPECTED[A], EXPECTED[C]]


# Each sampled frame's own label (frames above; a frame past an attribute's last span takes its
# last annotated frame's value), by hand; a clip's label is their union (EXPECTED).
FRAME_LABELS = {
  A: [[1, 0, 1, 0, 0], [1, 1, 1, 0, 0], [1, 0, 1, 0, 0], [1, 0, 1, 0, 0]],  # face on frame 3 only
  B: [[0, 1, 0, 1, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 1]],  # 0 1 1 2
  C: [[1, 0, 1, 0, 0], [1, 0, 1, 0, 0], [1, 0, 1, 0, 0], [1, 1, 1, 0, 0]],  # frame 7 → 6: face
}


def test_frames_view_has_frame_level_labels(manual, data_dir):
  clips = load(manual, data_dir)
  frames = load(manual, data_dir, frames=True)
  names = [A, B, C]
  assert frames.visuals.shape == (3 * T, S, S, 3) and not frames.is_video
  np.testing.assert_array_equal(frames.visuals, clips.visuals.reshape(3 * T, S, S, 3))
  assert frames.privacy.tolist() == [row for n in names for row in FRAME_LABELS[n]]
  for n in names:  # the clip label is the union of its frames'
    assert np.max(FRAME_LABELS[n], axis=0).tolist() == EXPECTED[n]
  assert frames.labels.tolist() == [0] * 8 + [33] * 4
  assert frames.queries[:T] == [clips.queries[0]] * T
  assert frames.attribute_names == pa_hmdb51.ATTRIBUTES
  sliced = load(manual, data_dir, "test[2:]", frames=True)
  assert sliced.privacy.tolist() == FRAME_LABELS[C]
  via = pipeline.load_split(
    "pa_hmdb51", "test", data_dir=data_dir, manual_dir=manual, clip_length=T, image_size=S,
    frames=True,
  )  # fmt: skip
  np.testing.assert_array_equal(via.privacy, frames.privacy)
  with pytest.raises(ValueError, match=r"^frames='yes': must be True or False$"):
    load(manual, data_dir, frames="yes")


@pytest.fixture()
def broken(manual, tmp_path):
  """A writable copy of the fixture to break."""
  root = str(tmp_path / "manual")
  shutil.copytree(manual, root)
  return root


def test_missing_files_are_named(broken, tmp_path):
  os.remove(f"{broken}/PrivacyAttributes/kiss.json")
  with pytest.raises(ValueError, match=r"^pa_hmdb51: missing \S+/PrivacyAttributes/kiss\.json \("):
    load(broken, str(tmp_path / "a"))
  shutil.rmtree(f"{broken}/PrivacyAttributes")
  with pytest.raises(ValueError, match=r"^pa_hmdb51: missing \S+/PrivacyAttributes \(the annot"):
    load(broken, str(tmp_path / "b"))


def test_missing_video_is_named(broken, tmp_path):
  os.remove(f"{broken}/hmdb51/{C}")
  with pytest.raises(
    ValueError, match=r"^pa_hmdb51: 1 annotated video\(s\) not found, e\.g\. \S+Meet"
  ):
    load(broken, str(tmp_path / "a"))


@pytest.mark.parametrize(
  "content, message",
  [
    ("{not json", "not a readable JSON file"),
    ('{"x.avi": {"face": [[0, 1, 0]]}}', r"x\.avi: 'skin_color' must be a non-empty list"),
    (
      json.dumps({"x.avi": {**LABELS[A], "face": [[5, 2, 1]]}}),
      r"x\.avi: face span \[5, 2, 1\] is not \[start <= end",
    ),
    (json.dumps({"x.avi": {**LABELS[A], "nudity": [[0, 9, "2"]]}}), r"x\.avi: nudity span"),
  ],
)
def test_malformed_annotations_are_named(broken, tmp_path, content, message):
  path = f"{broken}/PrivacyAttributes/wave.json"
  with open(path, "w") as f:
    f.write(content)
  with pytest.raises(ValueError, match=f"^{re.escape(path)}: .*{message}"):
    load(broken, str(tmp_path / "a"))
