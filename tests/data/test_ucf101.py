"""Tests of anonymax.data.ucf101 (and the shared clip sampling) on a tiny UCF101 in the real layout."""

from __future__ import annotations

import os
import re
import shutil
import sys
from fractions import Fraction

import numpy as np
import pytest

from anonymax.data import action_videos, pipeline, ucf101, video_files
from anonymax.types import Query
from tests.data.video_fixtures import frame_ids, frames_of

T, S = 4, 16
# name → (class, number of frames); the 3-frame video is shorter than T.
VIDEOS = {
  "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi": 10,
  "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi": 7,
  "Archery/v_Archery_g01_c01.avi": 3,
  "Archery/v_Archery_g09_c02.avi": 12,
  "YoYo/v_YoYo_g02_c01.avi": 8,
  "YoYo/v_YoYo_g10_c03.avi": 6,
}
# Split 1: the g08..g25 groups train, g01..g07 test (as in the release); split 2 differs.
TRAIN1 = [
  "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
  "Archery/v_Archery_g09_c02.avi 3",
  "YoYo/v_YoYo_g10_c03.avi 101",
]
TEST1 = [
  "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
  "Archery/v_Archery_g01_c01.avi",
  "YoYo/v_YoYo_g02_c01.avi",
]
TRAIN2 = ["Archery/v_Archery_g01_c01.avi 3", "YoYo/v_YoYo_g02_c01.avi 101"]
TEST2 = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "YoYo/v_YoYo_g10_c03.avi"]


def write_lines(path, lines):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="") as f:
    f.write("".join(f"{line}\r\n" for line in lines))  # the release's CRLF line ends


def write_ucf101(root) -> None:
  for v, (name, n) in enumerate(VIDEOS.items()):
    path = os.path.join(root, "UCF-101", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    video_files.write_video(path, frames_of(v, n), Fraction(25), codec="mpeg4")
  lists = os.path.join(root, "ucfTrainTestlist")
  write_lines(f"{lists}/classInd.txt", [f"{i + 1} {c}" for i, c in enumerate(ucf101.CLASSES)])
  for k, (train, test) in {1: (TRAIN1, TEST1), 2: (TRAIN2, TEST2)}.items():
    write_lines(f"{lists}/trainlist0{k}.txt", train)
    write_lines(f"{lists}/testlist0{k}.txt", test)


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("ucf101_manual"))
  write_ucf101(root)
  return root


def load(manual, data_dir, split, **kw):
  kw = {"clip_length": T, "image_size": S, **kw}
  return ucf101.load_split(split, data_dir=data_dir, manual_dir=manual, **kw)


def test_sample_indices_centre_of_equal_segments_and_repeats_short_videos():
  np.testing.assert_array_equal(action_videos.sample_indices(10, 4), [1, 3, 6, 8])
  np.testing.assert_array_equal(action_videos.sample_indices(8, 4), [1, 3, 5, 7])
  np.testing.assert_array_equal(action_videos.sample_indices(3, 4), [0, 1, 1, 2])
  np.testing.assert_array_equal(action_videos.sample_indices(1, 3), [0, 0, 0])
  for n in range(1, 40):
    idx = action_videos.sample_indices(n, 8)
    assert idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) >= 0)
  assert action_videos.spread(list("abcdefghij"), 3) == ["b", "f", "i"]
  assert action_videos.spread([1, 2], 5) == [1, 2]


def test_read_clip_samples_and_crops_and_names_a_bad_file(tmp_path):
  path = str(tmp_path / "v.avi")
  video_files.write_video(path, frames_of(2, 10), Fraction(25), codec="mpeg4")
  clip, idx = action_videos.read_clip(path, clip_length=4, image_size=8)
  assert clip.shape == (4, 8, 8, 3) and clip.dtype == np.uint8
  assert idx.tolist() == [1, 3, 6, 8] and frame_ids(clip) == (2, [1, 3, 6, 8])
  bad = tmp_path / "bad.avi"
  bad.write_bytes(b"RIFF not really a video" * 10)
  for p in (str(bad), str(tmp_path / "missing.avi")):
    with pytest.raises(ValueError, match=f"^{re.escape(p)}: cannot read video"):
      action_videos.read_clip(p, clip_length=4, image_size=8)


def test_split_membership_labels_queries_and_sampled_frames(manual, data_dir):
  for split, lines in (("train", TRAIN1), ("test", TEST1)):
    data = load(manual, data_dir, split)
    names = [line.split()[0] for line in lines]
    assert data.visuals.shape == (len(names), T, S, S, 3) and data.visuals.dtype == np.uint8
    assert data.is_video and data.privacy.shape == (len(names), 0)
    assert data.class_names == ucf101.CLASSES and data.attribute_names == ()
    expected = [ucf101.CLASSES.index(n.split("/")[0]) for n in names]
    assert data.labels.dtype == np.int32 and data.labels.tolist() == expected
    for q, label in zip(data.queries, expected):
      assert q == Query(
        action_videos.ACTION_PROMPT, (ucf101.CLASS_WORDS[label],), ucf101.CLASS_WORDS
      )
    # Each clip holds the uniformly sampled frames of its own video, in list order.
    for clip, name in zip(data.visuals, names):
      video = list(VIDEOS).index(name)
      want = action_videos.sample_indices(VIDEOS[name], T).tolist()
      assert frame_ids(clip) == (video, want)
  assert "tensorflow" not in sys.modules
  assert ucf101.CLASS_WORDS[0] == "apply eye makeup" and ucf101.CLASS_WORDS[-1] == "yo yo"


def test_split_number_slices_and_num_examples(manual, data_dir):
  data = load(manual, data_dir, "train", split_number=2)
  assert data.labels.tolist() == [2, 100]
  assert frame_ids(data.visuals[0]) == (2, [0, 1, 1, 2])  # the 3-frame video repeats frames
  head = load(manual, data_dir, "test[:2]")
  assert head.labels.tolist() == [0, 2]
  two = load(manual, data_dir, "test", num_examples=2)  # spread over the 3 videos: 1st and 3rd
  np.testing.assert_array_equal(two.visuals, load(manual, data_dir, "test").visuals[[0, 2]])


def test_pipeline_dispatch(manual, data_dir):
  data = pipeline.load_split(
    "ucf101", "test", data_dir=data_dir, manual_dir=manual, clip_length=T, image_size=S
  )
  direct = load(manual, data_dir, "test")
  np.testing.assert_array_equal(data.visuals, direct.visuals)
  assert data.queries == direct.queries and data.class_names == ucf101.CLASSES


def test_config_names_and_bad_options():
  assert ucf101.make_config(split="train").name == "train_split1_clips8_s112"
  assert ucf101.make_config(split_number=3, clip_length=4, image_size=16, num_examples=5).name == (
    "test_split3_clips4_s16_n5"
  )
  for kw, field in (
    ({"split_number": 4}, "split_number"),
    ({"clip_length": 0}, "clip_length"),
    ({"image_size": 2.5}, "image_size"),
    ({"num_examples": 0}, "num_examples"),
    ({"split": "val"}, "split"),
  ):
    with pytest.raises(ValueError, match=f"^{field}="):
      ucf101.make_config(**kw)


def test_missing_files_are_named(tmp_path):
  empty = str(tmp_path / "manual")
  with pytest.raises(
    ValueError, match=f"manual directory {re.escape(empty)} is missing or empty.*UCF-101/"
  ):
    load(empty, str(tmp_path / "tfds"), "test")
  os.makedirs(f"{empty}/UCF-101")
  with pytest.raises(
    ValueError, match=r"missing .*ucfTrainTestlist/classInd\.txt.*testlist01\.txt"
  ):
    load(empty, str(tmp_path / "tfds"), "test")


@pytest.fixture()
def broken(manual, tmp_path):
  """A writable copy of the fixture to break."""
  root = str(tmp_path / "manual")
  shutil.copytree(manual, root)
  return root


def test_corrupt_video_is_named(broken, tmp_path):
  path = f"{broken}/UCF-101/Archery/v_Archery_g01_c01.avi"
  with open(path, "wb") as f:
    f.write(b"\x00garbage" * 100)
  with pytest.raises(ValueError, match=f"^{re.escape(path)}: cannot read video"):
    load(broken, str(tmp_path / "tfds"), "test")


def test_bad_lists_are_named(broken, tmp_path):
  lists = f"{broken}/ucfTrainTestlist"
  os.remove(f"{broken}/UCF-101/YoYo/v_YoYo_g02_c01.avi")
  with pytest.raises(ValueError, match=r"testlist01\.txt: 1 listed video.*v_YoYo_g02_c01\.avi"):
    load(broken, str(tmp_path / "a"), "test")
  write_lines(f"{lists}/trainlist01.txt", ["Archery/v_Archery_g09_c02.avi 4"])
  with pytest.raises(
    ValueError, match=r"trainlist01\.txt:1: class id 4 disagrees with folder Arch"
  ):
    load(broken, str(tmp_path / "b"), "train")
  write_lines(f"{lists}/classInd.txt", ["1 ApplyEyeMakeup", "2 Archery"])
  with pytest.raises(ValueError, match=r"classInd\.txt: 2 classes, expected the 101"):
    load(broken, str(tmp_path / "c"), "train")
