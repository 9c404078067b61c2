"""Tests of the VISPR builder and loader on a tiny fixture written in the release's layout."""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from anonymax.data import imaging, pipeline, vispr

S = 16
# id -> (width, height, PIL mode, labels); written in an order that is not the id order.
TRAIN = {
  "2017_10000003": (40, 30, "RGB", ["a0_safe"]),
  "2017_10000001": (
    25,
    50,
    "RGB",
    ["a4_gender", "a9_face_complete", "a17_color", "a1_age_approx", "a16_race"],
  ),
  "2017_10000002": (
    33,
    33,
    "L",
    [
      "a10_face_partial",
      "a12_semi_nudity",
      "a64_rel_personal",
      "a65_rel_social",
      "a104_license_plate_partial",
    ],
  ),
}
TEST = {
  "2017_20000002": (60, 20, "RGB", ["a31_passport", "a19_name_full"]),
  "2017_20000001": (20, 20, "RGB", ["a65_rel_social", "a4_gender"]),
}
# Expected multi-hot vectors, by hand, in sorted id order.
# PAPER_ATTRIBUTES: gender, face_complete, face_partial, semi_nudity, color, rel_personal, rel_social
PAPER_TRAIN = [
  [1, 1, 0, 0, 1, 0, 0],  # 2017_10000001
  [0, 0, 1, 1, 0, 1, 1],  # 2017_10000002
  [0, 0, 0, 0, 0, 0, 0],  # 2017_10000003: a0_safe only
]
PAPER_TEST = [
  [1, 0, 0, 0, 0, 0, 1],  # 2017_20000001
  [0, 0, 0, 0, 0, 0, 0],  # 2017_20000002: no paper attribute
]
# Positions in ALL_ATTRIBUTES (sorted by attribute number) of the labels above.
ALL_INDEX = {
  "a1_age_approx": 0,
  "a4_gender": 3,
  "a9_face_complete": 8,
  "a10_face_partial": 9,
  "a12_semi_nudity": 11,
  "a16_race": 13,
  "a17_color": 14,
  "a19_name_full": 16,
  "a31_passport": 26,
  "a64_rel_personal": 46,
  "a65_rel_social": 47,
  "a104_license_plate_partial": 66,
}
ALL_TRAIN_ON = [
  ["a1_age_approx", "a4_gender", "a9_face_complete", "a16_race", "a17_color"],
  [
    "a10_face_partial",
    "a12_semi_nudity",
    "a64_rel_personal",
    "a65_rel_social",
    "a104_license_plate_partial",
  ],
  [],
]
ALL_TEST_ON = [["a4_gender", "a65_rel_social"], ["a19_name_full", "a31_passport"]]


def write_release(root: pathlib.Path) -> pathlib.Path:
  """Writes the fixture as the release lays it out; returns the manual dir."""
  rng = np.random.default_rng(0)
  for folder, table in (("train2017", TRAIN), ("test2017", TEST)):
    (root / "images" / folder).mkdir(parents=True)
    (root / "annotations" / folder).mkdir(parents=True)
    for image_id, (w, h, mode, labels) in table.items():
      pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
      Image.fromarray(pixels).convert(mode).save(root / "images" / folder / f"{image_id}.jpg")
      anno = {"id": image_id, "image_path": f"images/{folder}/{image_id}.jpg", "labels": labels}
      (root / "annotations" / folder / f"{image_id}.json").write_text(json.dumps(anno))
  return root


def _image(manual: pathlib.Path, folder: str, image_id: str) -> np.ndarray:
  return imaging.load_image(str(manual / "images" / folder / f"{image_id}.jpg"), S)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(data_dir, manual_dir) with the fixture; each config is built on first load."""
  root = tmp_path_factory.mktemp("vispr")
  return str(root / "tfds"), write_release(root / "manual")


def test_paper_attributes_images_and_order(built):
  data_dir, manual = built
  for split, folder, table, expected in (
    ("train", "train2017", TRAIN, PAPER_TRAIN),
    ("test", "test2017", TEST, PAPER_TEST),
  ):
    got = vispr.load_split(split, data_dir=data_dir, manual_dir=str(manual), image_size=S)
    ids = sorted(table)
    assert len(got) == len(ids) and not got.is_video
    assert got.visuals.shape == (len(ids), S, S, 3) and got.visuals.dtype == np.uint8
    for i, image_id in enumerate(ids):
      np.testing.assert_array_equal(got.visuals[i], _image(manual, folder, image_id))
    np.testing.assert_array_equal(got.privacy, np.array(expected, np.float32))
    assert got.privacy.dtype == np.float32
    assert got.attribute_names == vispr.PAPER_ATTRIBUTES
    assert got.class_names == ()
    np.testing.assert_array_equal(got.labels, np.full(len(ids), -1, np.int32))
    assert got.queries == [vispr.QUERY] * len(ids)
  assert "tensorflow" not in sys.modules


def test_all_attributes(built):
  data_dir, manual = built
  assert len(vispr.ALL_ATTRIBUTES) == 67 and len(set(vispr.ALL_ATTRIBUTES)) == 67
  assert vispr.SAFE_LABEL not in vispr.ALL_ATTRIBUTES
  assert set(vispr.PAPER_ATTRIBUTES) <= set(vispr.ALL_ATTRIBUTES)
  numbers = [int(a.split("_")[0][1:]) for a in vispr.ALL_ATTRIBUTES]
  assert numbers == sorted(numbers) and numbers[0] == 1 and numbers[-1] == 104
  for name, i in ALL_INDEX.items():
    assert vispr.ALL_ATTRIBUTES[i] == name
  for split, on in (("train", ALL_TRAIN_ON), ("test", ALL_TEST_ON)):
    got = vispr.load_split(
      split, data_dir=data_dir, manual_dir=str(manual), image_size=S, attributes="all"
    )
    expected = np.zeros((len(on), 67), np.float32)
    for row, names in enumerate(on):
      expected[row, [ALL_INDEX[n] for n in names]] = 1.0
    np.testing.assert_array_equal(got.privacy, expected)
    assert got.attribute_names == vispr.ALL_ATTRIBUTES


# The same images in PA-HMDB51's five columns (skin_color, face, gender, nudity, relationship),
# each the union of its VISPR ids, by hand from the PAPER_* rows above.
PA_TRAIN = [
  [1, 1, 1, 0, 0],  # color, face_complete, gender
  [0, 1, 0, 1, 1],  # face_partial, semi_nudity, rel_personal and rel_social
  [0, 0, 0, 0, 0],
]
PA_TEST = [[0, 0, 1, 0, 1], [0, 0, 0, 0, 0]]  # gender and rel_social; nothing


def test_pa_hmdb51_columns_are_unions_of_vispr_ids(built):
  from anonymax.data import pa_hmdb51

  data_dir, manual = built
  # The columns are PA-HMDB51's, in its order: judges trained here are scored there.
  assert vispr.ATTRIBUTE_SETS["pa_hmdb51"] == pa_hmdb51.ATTRIBUTES
  merged = [i for ids in vispr.PA_HMDB51_ATTRIBUTES.values() for i in ids]
  assert sorted(merged) == sorted(vispr.PAPER_ATTRIBUTES)  # each of the seven used exactly once
  kw = {"data_dir": data_dir, "manual_dir": str(manual), "image_size": S}
  for split, expected in (("train", PA_TRAIN), ("test", PA_TEST)):
    got = vispr.load_split(split, attributes="pa_hmdb51", **kw)
    np.testing.assert_array_equal(got.privacy, np.array(expected, np.float32))
    assert got.attribute_names == pa_hmdb51.ATTRIBUTES
    # The same pixels as the paper set's: read from its build, not decoded again.
    np.testing.assert_array_equal(got.visuals, vispr.load_split(split, **kw).visuals)
  assert vispr.make_config(image_size=S, attributes="pa_hmdb51").name == f"paper_s{S}"
  assert not list((pathlib.Path(data_dir) / "vispr").glob("pa_hmdb51*"))
  records = vispr.read_annotations(str(manual), "train", "pa_hmdb51")
  np.testing.assert_array_equal([r["privacy"] for r in records], PA_TRAIN)
  assert vispr.multi_hot(["a10_face_partial", "a0_safe"], "pa_hmdb51").tolist() == [0, 1, 0, 0, 0]
  assert vispr.multi_hot(["a0_safe"], "paper").tolist() == [0] * 7


def test_tfds_ids_sorted_and_config_names(built):
  data_dir, manual = built
  vispr.load_split("train", data_dir=data_dir, manual_dir=str(manual), image_size=S)
  config = vispr.make_config(image_size=S)
  assert config.name == f"paper_s{S}"
  assert vispr.make_config(attributes="all").name == "all_s224"
  assert vispr.make_config() is vispr.Vispr.BUILDER_CONFIGS[0]
  source = tfds.data_source(
    "vispr", split="train", data_dir=data_dir, builder_kwargs={"config": config}
  )
  ids = [r["id"] for r in source.__getitems__(list(range(len(source))))]
  ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
  assert ids == sorted(TRAIN)
  assert list((pathlib.Path(data_dir) / "vispr").rglob("*array_record*"))


def test_num_examples_and_slices(built):
  data_dir, manual = built
  kw = {"data_dir": data_dir, "manual_dir": str(manual), "image_size": S}
  full = vispr.load_split("train", **kw)
  two = vispr.load_split("train", num_examples=2, **kw)
  np.testing.assert_array_equal(two.visuals, full.visuals[:2])
  np.testing.assert_array_equal(two.privacy, full.privacy[:2])
  assert len(two.queries) == 2 and two.labels.shape == (2,)
  assert len(vispr.load_split("train", num_examples=10, **kw)) == 3
  tail = vispr.load_split("train[1:]", **kw)
  np.testing.assert_array_equal(tail.privacy, full.privacy[1:])
  for bad in (0, -1, 1.5, True):
    with pytest.raises(ValueError, match="num_examples"):
      vispr.load_split("train", num_examples=bad, **kw)


def test_pipeline_dispatch_and_default_manual_dir(built, tmp_path):
  data_dir, manual = built
  got = pipeline.load_split(
    "vispr", "train", data_dir=data_dir, manual_dir=str(manual), image_size=S
  )
  np.testing.assert_array_equal(got.privacy, np.array(PAPER_TRAIN, np.float32))
  # Without manual_dir, the release is looked for in <data_dir>/downloads/manual.
  fresh = tmp_path / "tfds"
  shutil.copytree(manual, fresh / "downloads" / "manual")
  got = vispr.load_split("test", data_dir=str(fresh), image_size=S)
  np.testing.assert_array_equal(got.privacy, np.array(PAPER_TEST, np.float32))


def test_missing_annotation_folders_one_error_naming_them(tmp_path):
  manual = tmp_path / "manual"
  (manual / "images").mkdir(parents=True)  # not empty, but no annotations
  with pytest.raises(ValueError) as e:
    vispr.load_split("train", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual), image_size=S)
  msg = str(e.value)
  assert str(manual / "annotations" / "train2017") in msg
  assert str(manual / "annotations" / "test2017") in msg
  assert "\n" not in msg
  # A manual dir that does not exist at all gets the same message.
  with pytest.raises(ValueError, match="annotations/train2017"):
    vispr.load_split(
      "train", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "nowhere"), image_size=S
    )
  # Only the test folder missing: only it is named.
  write_release(tmp_path / "one")
  shutil.rmtree(tmp_path / "one" / "annotations" / "test2017")
  with pytest.raises(ValueError) as e:
    vispr.read_annotations(str(tmp_path / "one"), "train")
  assert "test2017" in str(e.value) and "train2017" not in str(e.value)


@pytest.mark.parametrize(
  "content, match",
  [
    ("{not json", "not valid JSON"),
    (json.dumps({"id": "2017_10000001"}), "no 'labels'"),
    (json.dumps({"labels": "a4_gender"}), "no 'labels'"),
    (json.dumps([1, 2]), "no 'labels'"),
  ],
)
def test_bad_annotation_names_the_file(tmp_path, content, match):
  manual = write_release(tmp_path / "manual")
  path = manual / "annotations" / "train2017" / "2017_10000002.json"
  path.write_text(content)
  with pytest.raises(ValueError, match=match) as e:
    vispr.read_annotations(str(manual), "train")
  assert str(path) in str(e.value)


def test_missing_or_unreadable_image_names_it(tmp_path):
  manual = write_release(tmp_path / "manual")
  image = manual / "images" / "train2017" / "2017_10000001.jpg"
  image.unlink()
  with pytest.raises(ValueError, match="not found") as e:
    vispr.read_annotations(str(manual), "train")
  assert str(image) in str(e.value)
  # A file that is there but is not an image fails while building, naming it and its JSON.
  image.write_bytes(b"not a jpeg")
  with pytest.raises(ValueError, match="not a readable image") as e:
    vispr.load_split("train", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual), image_size=S)
  assert str(image) in str(e.value)
  assert "2017_10000001.json" in str(e.value)


def test_unknown_label_is_an_error_for_all_only(tmp_path):
  manual = write_release(tmp_path / "manual")
  path = manual / "annotations" / "test2017" / "2017_20000001.json"
  anno = json.loads(path.read_text())
  path.write_text(json.dumps({**anno, "labels": ["a4_gender", "a999_made_up"]}))
  with pytest.raises(ValueError, match="a999_made_up") as e:
    vispr.read_annotations(str(manual), "test", "all")
  assert str(path) in str(e.value)
  records = vispr.read_annotations(str(manual), "test", "paper")
  np.testing.assert_array_equal(records[0]["privacy"], [1, 0, 0, 0, 0, 0, 0])


def test_annotation_without_id_or_image_path_uses_the_file_name(tmp_path):
  manual = write_release(tmp_path / "manual")
  path = manual / "annotations" / "train2017" / "2017_10000003.json"
  path.write_text(json.dumps({"labels": ["a17_color"]}))
  records = vispr.read_annotations(str(manual), "train")
  assert [r["id"] for r in records] == sorted(TRAIN)
  assert records[2]["image"].endswith("images/train2017/2017_10000003.jpg")
  np.testing.assert_array_equal(records[2]["privacy"], [0, 0, 0, 0, 1, 0, 0])


def test_bad_options(tmp_path):
  for kw, match in (
    ({"attributes": "some"}, "attributes"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": 8.5}, "image_size"),
  ):
    with pytest.raises(ValueError, match=match):
      vispr.load_split("train", data_dir=str(tmp_path), manual_dir=str(tmp_path), **kw)
  with pytest.raises(ValueError, match="split"):
    vispr.load_split("val", data_dir=str(tmp_path), manual_dir=str(tmp_path))
