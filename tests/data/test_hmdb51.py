"""Tests of anonymax.data.hmdb51 on a tiny HMDB51 in the real layout (videos and split files)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from fractions import Fraction

import numpy as np
import pytest

from anonymax.data import action_videos, hmdb51, pipeline, video_files
from anonymax.types import Query
from tests.data.video_fixtures import frame_ids, frames_of

T, S = 4, 16
# class → [(video, number of frames, id in split 1, id in split 2)]; id 1 train, 2 test, 0 neither.
VIDEOS = {
  "brush_hair": [
    ("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 10, 1, 2),
    ("Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi", 6, 2, 1),
    ("brushing_hair_2_brush_hair_h_nm_np1_ba_med_2.avi", 9, 0, 1),
  ],
  "cartwheel": [
    ("Bodenturnen_2004_cartwheel_f_cm_np1_le_med_0.avi", 12, 2, 0),
    ("Cartwheel_Tutorial_cartwheel_f_cm_np1_ri_med_1.avi", 3, 1, 2),
  ],
  "wave": [
    ("20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0.avi", 8, 1, 1),
    ("21_wave_u_nm_np1_fr_goo_5.avi", 7, 2, 2),
  ],
}
ALL = [(c, name, n, ids) for c, vids in VIDEOS.items() for name, n, *ids in vids]


def write_hmdb51(root) -> None:
  for v, (cls, name, n, _) in enumerate(ALL):
    os.makedirs(f"{root}/hmdb51/{cls}", exist_ok=True)
    video_files.write_video(
      f"{root}/hmdb51/{cls}/{name}", frames_of(v, n), Fraction(30), codec="mpeg4"
    )
  os.makedirs(f"{root}/testTrainMulti_7030_splits")
  for k in (1, 2):
    for cls in hmdb51.CLASSES:  # one file per class, even where this fixture has no video
      # The release's lines: "<video>.avi <id> " (a space after the id).
      lines = [f"{name} {ids[k - 1]} \n" for c, name, _, ids in ALL if c == cls]
      with open(f"{root}/testTrainMulti_7030_splits/{cls}_test_split{k}.txt", "w") as f:
        f.write("".join(lines))


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("hmdb51_manual"))
  write_hmdb51(root)
  return root


def load(manual, data_dir, split, **kw):
  kw = {"clip_length": T, "image_size": S, **kw}
  return hmdb51.load_split(split, data_dir=data_dir, manual_dir=manual, **kw)


def expected(split: str, split_number: int):
  """(global video index, class) of the split's videos: by class, then split-file order."""
  want = "1" if split == "train" else "2"
  return [(v, c) for v, (c, _, _, ids) in enumerate(ALL) if str(ids[split_number - 1]) == want]


@pytest.mark.parametrize("split_number", [1, 2])
def test_split_membership_labels_queries_and_sampled_frames(manual, data_dir, split_number):
  for split in ("train", "test"):
    data = load(manual, data_dir, split, split_number=split_number)
    want = expected(split, split_number)
    assert data.visuals.shape == (len(want), T, S, S, 3) and data.visuals.dtype == np.uint8
    assert data.privacy.shape == (len(want), 0) and data.privacy.dtype == np.float32
    assert data.class_names == hmdb51.CLASSES and len(hmdb51.CLASSES) == 51
    labels = [hmdb51.CLASSES.index(c) for _, c in want]
    assert data.labels.dtype == np.int32 and data.labels.tolist() == labels
    for q, label in zip(data.queries, labels):
      assert q == Query(
        action_videos.ACTION_PROMPT, (hmdb51.CLASS_WORDS[label],), hmdb51.CLASS_WORDS
      )
    for clip, (v, _) in zip(data.visuals, want):
      assert frame_ids(clip) == (v, action_videos.sample_indices(ALL[v][2], T).tolist())
  assert hmdb51.CLASS_WORDS[:2] == ("brush hair", "cartwheel") and hmdb51.CLASSES[-1] == "wave"
  assert "tensorflow" not in sys.modules


def test_unused_videos_are_in_neither_split(manual, data_dir):
  unused = {v for v, (_, _, _, ids) in enumerate(ALL) if ids[0] == 0}
  seen = []
  for split in ("train", "test"):
    seen += [frame_ids(c)[0] for c in load(manual, data_dir, split).visuals]
  assert sorted(seen) == sorted(set(range(len(ALL))) - unused)


def test_pipeline_dispatch_and_exclude_pa_hmdb51(manual, data_dir, tmp_path):
  data = pipeline.load_split(
    "hmdb51", "train", data_dir=data_dir, manual_dir=manual, clip_length=T, image_size=S
  )
  np.testing.assert_array_equal(data.visuals, load(manual, data_dir, "train").visuals)
  # PA-HMDB51 annotates one training video: exclude_pa_hmdb51 leaves it out.
  root = str(tmp_path / "manual")
  shutil.copytree(manual, root)
  os.makedirs(f"{root}/PrivacyAttributes")
  for cls in hmdb51.CLASSES:
    annotated = {ALL[0][1]: {}} if cls == "brush_hair" else {}
    spans = {a: [[0, 9, 1]] for a in ("skin_color", "face", "gender", "nudity", "relationship")}
    with open(f"{root}/PrivacyAttributes/{cls}.json", "w") as f:
      json.dump({k: spans for k in annotated}, f)
  kept = load(root, data_dir, "train", exclude_pa_hmdb51=True)
  assert [frame_ids(c)[0] for c in kept.visuals] == [v for v, _ in expected("train", 1)][1:]
  assert hmdb51.make_config(split="train", exclude_pa_hmdb51=True).name == (
    "train_split1_clips8_s112_nopa"
  )


def test_missing_files_are_named(manual, tmp_path):
  root = str(tmp_path / "manual")
  os.makedirs(f"{root}/hmdb51")
  with pytest.raises(ValueError, match=r"missing .*testTrainMulti_7030_splits \(the split files"):
    load(root, str(tmp_path / "a"), "test")
  shutil.copytree(f"{manual}/testTrainMulti_7030_splits", f"{root}/testTrainMulti_7030_splits")
  os.remove(f"{root}/testTrainMulti_7030_splits/kiss_test_split1.txt")
  with pytest.raises(ValueError, match=r"^hmdb51: missing \S+/kiss_test_split1\.txt \("):
    load(root, str(tmp_path / "b"), "test")
  with pytest.raises(
    ValueError, match=r"^hmdb51: 3 video\(s\) of the split files not found, e\.g\."
  ):
    load(root, str(tmp_path / "c"), "test", split_number=2)


def test_bad_split_line_and_corrupt_video_are_named(manual, tmp_path):
  root = str(tmp_path / "manual")
  shutil.copytree(manual, root)
  path = f"{root}/hmdb51/wave/21_wave_u_nm_np1_fr_goo_5.avi"
  with open(path, "wb") as f:
    f.write(b"\x00not a video" * 50)
  with pytest.raises(ValueError, match=f"^{re.escape(path)}: cannot read video"):
    load(root, str(tmp_path / "a"), "test")
  split_path = f"{root}/testTrainMulti_7030_splits/wave_test_split1.txt"
  with open(split_path, "w") as f:
    f.write("21_wave_u_nm_np1_fr_goo_5.avi 3 \n")
  with pytest.raises(
    ValueError, match=rf"^{re.escape(split_path)}:1: expected '<video>.avi <0\|1\|2>'"
  ):
    load(root, str(tmp_path / "b"), "test")
