"""The OK-VQA privacy annotation (anonymax.data.okvqa_privacy) and OK-VQA splits that carry it."""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest

from anonymax.data import okvqa, okvqa_privacy, pipeline, vispr
from tests.data import test_okvqa

SIZE = test_okvqa.SIZE
PAPER = list(vispr.PAPER_ATTRIBUTES)
# COCO image id → VISPR ids present, for every image of the test_okvqa fixture.
LABELS = {
  9: ["a4_gender", "a9_face_complete", "a17_color"],
  25: [],
  42: ["a10_face_partial", "a65_rel_social"],
  73: ["a0_safe"],
}
# By hand: PAPER_ATTRIBUTES order (gender, face_complete, face_partial, semi_nudity, color,
# rel_personal, rel_social) and PA-HMDB51's (skin_color, face, gender, nudity, relationship).
PAPER_ROWS = {
  9: [1, 1, 0, 0, 1, 0, 0],
  25: [0] * 7,
  42: [0, 0, 1, 0, 0, 0, 1],
  73: [0] * 7,
}
PA_ROWS = {9: [1, 1, 1, 0, 0], 25: [0] * 5, 42: [0, 1, 0, 0, 1], 73: [0] * 5}


def write_annotation(path: pathlib.Path, labels=None, attributes=None) -> pathlib.Path:
  content = {
    "attributes": PAPER if attributes is None else attributes,
    "images": {str(k): v for k, v in (LABELS if labels is None else labels).items()},
  }
  path.write_text(json.dumps(content, indent=2))
  return path


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory) -> pathlib.Path:
  root = test_okvqa.write_release(tmp_path_factory.mktemp("manual"))
  write_annotation(root / okvqa_privacy.ANNOTATION_FILE)
  return root


def load(manual_dir, data_dir, split="test", **kw):
  return okvqa.load_split(split, data_dir=data_dir, manual_dir=manual_dir, image_size=SIZE, **kw)


def test_read_annotations_in_each_attribute_set(manual_dir):
  path = manual_dir / okvqa_privacy.ANNOTATION_FILE
  paper = okvqa_privacy.read_annotations(path)
  assert {k: v.tolist() for k, v in paper.items()} == PAPER_ROWS
  assert all(v.dtype == np.float32 for v in paper.values())
  merged = okvqa_privacy.read_annotations(path, "pa_hmdb51")
  assert {k: v.tolist() for k, v in merged.items()} == PA_ROWS


def test_splits_carry_the_labels_of_their_images(manual_dir, data_dir):
  name = okvqa_privacy.ANNOTATION_FILE  # relative: inside the manual dir
  test = load(manual_dir, data_dir, privacy_annotations=name)
  assert test.attribute_names == vispr.PAPER_ATTRIBUTES
  assert test.privacy.tolist() == [PAPER_ROWS[42], PAPER_ROWS[73]]  # questions 420, 730
  assert test.question_types == ("seven", "other")
  # Image 9 has two questions (90, 91): one row each, or one for the image with unique_images.
  train = load(manual_dir, data_dir, "train", privacy_annotations=name, attributes="pa_hmdb51")
  assert train.privacy.tolist() == [PA_ROWS[9], PA_ROWS[9], PA_ROWS[25]]
  assert train.attribute_names == ("skin_color", "face", "gender", "nudity", "relationship")
  once = load(manual_dir, data_dir, "train", privacy_annotations=name, unique_images=True)
  assert [q.prompt for q in once.queries] == [test_okvqa.TRAIN[90][1], test_okvqa.TRAIN[250][1]]
  assert once.privacy.tolist() == [PAPER_ROWS[9], PAPER_ROWS[25]]
  np.testing.assert_array_equal(once.visuals[1], load(manual_dir, data_dir, "train").visuals[2])
  # Without the annotation the split has no privacy columns, as before.
  bare = load(manual_dir, data_dir)
  assert bare.privacy.shape == (2, 0) and bare.attribute_names == ()
  # Through the pipeline, with an absolute path, as a config's data section passes it.
  via = pipeline.load_split(
    "okvqa",
    "test",
    data_dir=data_dir,
    manual_dir=str(manual_dir),
    image_size=SIZE,
    privacy_annotations=str(manual_dir / name),
    unique_images=True,
  )
  np.testing.assert_array_equal(via.privacy, test.privacy)


def test_the_default_manual_dir_holds_the_file(manual_dir, tmp_path):
  import shutil

  data_dir = tmp_path / "tfds"
  shutil.copytree(manual_dir, data_dir / "downloads" / "manual")
  got = okvqa.load_split(
    "test",
    data_dir=str(data_dir),
    image_size=SIZE,
    privacy_annotations=okvqa_privacy.ANNOTATION_FILE,
  )
  assert got.privacy.tolist() == [PAPER_ROWS[42], PAPER_ROWS[73]]


def test_a_missing_file_is_one_line_naming_it(manual_dir, data_dir, tmp_path):
  path = tmp_path / "nowhere.json"
  with pytest.raises(ValueError) as e:
    load(manual_dir, data_dir, privacy_annotations=str(path))
  message = str(e.value)
  assert message.startswith(f"{path}: OK-VQA privacy annotation not found") and "\n" not in message
  assert "privacy_test=vispr" in message  # and how to do without it


@pytest.mark.parametrize(
  "content, message",
  [
    ("{not json", "not a readable JSON file"),
    ("[1, 2]", "expected an object with 'attributes' and 'images'"),
    (json.dumps({"images": {}}), "'attributes' must be a non-empty list"),
    (json.dumps({"attributes": ["a4_gender", "face"], "images": {}}), "lists 'face', not a VISPR"),
    (json.dumps({"attributes": PAPER + ["a4_gender"], "images": {}}), "lists an attribute twice"),
    (json.dumps({"attributes": PAPER, "images": [9, 25]}), "'images' must be an object"),
    (json.dumps({"attributes": PAPER, "images": {"COCO_val2014_42": []}}), "not a COCO image id"),
    (json.dumps({"attributes": PAPER, "images": {"42": "a4_gender"}}), "image 42: expected a list"),
    (
      json.dumps({"attributes": PAPER, "images": {"42": ["a31_passport"]}}),
      "image 42: 'a31_passport' is not one of its 'attributes'",
    ),
    (
      json.dumps({"attributes": ["a4_gender"], "images": {}}),
      "attributes='paper' needs 'a9_face_complete', which it does not annotate",
    ),
  ],
)
def test_a_malformed_file_is_one_line_naming_it(tmp_path, content, message):
  path = tmp_path / "annotation.json"
  path.write_text(content)
  with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*{message}") as e:
    okvqa_privacy.read_annotations(path)
  assert "\n" not in str(e.value)


def test_every_image_judged_must_be_annotated(manual_dir, data_dir, tmp_path):
  path = write_annotation(tmp_path / "partial.json", {42: LABELS[42], 9: []})
  with pytest.raises(ValueError, match=r": 1 image\(s\) of the split are not annotated, e\.g\. "):
    load(manual_dir, data_dir, privacy_annotations=str(path))
  # All 67 attributes cannot be read from an annotation of seven.
  with pytest.raises(ValueError, match="attributes='all' needs 'a1_age_approx'"):
    load(manual_dir, data_dir, privacy_annotations=str(path), attributes="all")
  with pytest.raises(ValueError, match="^attributes='some': must be one of"):
    load(manual_dir, data_dir, privacy_annotations=str(path), attributes="some")
  with pytest.raises(ValueError, match="^unique_images=1: must be True or False"):
    load(manual_dir, data_dir, unique_images=1)
