"""Tests of the OK-VQA builder and loader on a tiny fixture written in the real file formats."""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from anonymax.data import imaging, okvqa, pipeline

SIZE = 16
# (split, image_id) -> (width, height, mode): different sizes, aspect ratios and modes.
IMAGES = {
  ("train", 9): (40, 24, "RGB"),
  ("train", 25): (20, 36, "RGB"),
  ("test", 42): (30, 30, "L"),
  ("test", 73): (50, 20, "RGB"),
}
# question_id -> (image_id, question, question_type, ten answers); ids are image_id·10 + k.
TRAIN = {
  90: (
    9,
    "What sport is being played?",
    "four",
    ["tennis"] * 6 + ["racquetball"] * 2 + ["tenis"] * 2,
  ),
  91: (9, "Who is the man in white?", "seven", ["player", "athlete", "café owner"] + ["coach"] * 7),
  250: (25, "What brand is the bus?", "one", ["mercedes"] * 8 + ["volvo", "man"]),
}
TEST = {
  420: (42, "What year was this taken?", "seven", ["1950"] * 4 + ["1960"] * 6),
  730: (73, "Which animal is this?", "other", ["zebra"] * 10),
}


def write_split(root: pathlib.Path, split: str, questions: dict) -> None:
  q_name, a_name, folder = okvqa.SPLIT_SOURCES[split]
  # The files list questions in no particular order; the builder sorts them by question_id.
  order = sorted(questions, reverse=True)
  (root / q_name).write_text(
    json.dumps(
      {
        "license": {"url": "http://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"},
        "data_subtype": folder,
        "task_type": "Open-Ended",
        "questions": [
          {"image_id": questions[q][0], "question": questions[q][1], "question_id": q}
          for q in order
        ],
      }
    )
  )
  annotations = []
  for q in sorted(questions):
    image_id, _, qtype, answers = questions[q]
    annotations.append(
      {
        "image_id": image_id,
        "answer_type": "other",
        "question_type": qtype,
        "question_id": q,
        "answers": [
          # raw_answer differs from the normalised answer: the loader must take "answer".
          {"answer_id": i + 1, "raw_answer": a.upper(), "answer_confidence": "yes", "answer": a}
          for i, a in enumerate(answers)
        ],
        "confidence": 3,
      }
    )
  (root / a_name).write_text(
    json.dumps(
      {
        "license": {"url": "http://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"},
        "data_subtype": folder,
        "question_types": okvqa.CATEGORIES,
        "info": {"year": 2019, "version": "1.1", "description": "OK-VQA"},
        "annotations": annotations,
      }
    )
  )


def write_release(root: pathlib.Path, *, quality: int = 75) -> pathlib.Path:
  """The fixture's OK-VQA release in `root`: random COCO images (JPEG `quality`) and both splits'
  question and annotation files."""
  rng = np.random.default_rng(0)
  for (split, image_id), (w, h, mode) in IMAGES.items():
    path = okvqa.image_path(root, split, image_id)
    path.parent.mkdir(exist_ok=True)
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, quality=quality)
  write_split(root, "train", TRAIN)
  write_split(root, "test", TEST)
  return root


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory) -> pathlib.Path:
  return write_release(tmp_path_factory.mktemp("manual"), quality=90)


@pytest.fixture
def broken(manual_dir, tmp_path) -> pathlib.Path:
  """A private copy of the manual dir to damage."""
  return pathlib.Path(shutil.copytree(manual_dir, tmp_path / "manual"))


def _expected(manual, split, questions, ids):
  images = np.stack(
    [imaging.load_image(str(okvqa.image_path(manual, split, questions[q][0])), SIZE) for q in ids]
  )
  return images, [questions[q][1] for q in ids], [tuple(questions[q][3]) for q in ids]


@pytest.mark.parametrize("split, questions", [("train", TRAIN), ("test", TEST)])
def test_round_trip(manual_dir, data_dir, split, questions):
  got = okvqa.load_split(split, data_dir=data_dir, manual_dir=manual_dir, image_size=SIZE)
  ids = sorted(questions)
  images, prompts, answers = _expected(manual_dir, split, questions, ids)
  assert len(got) == len(questions)
  assert got.visuals.dtype == np.uint8 and got.visuals.shape == (len(ids), SIZE, SIZE, 3)
  np.testing.assert_array_equal(got.visuals, images)
  assert [q.prompt for q in got.queries] == prompts
  assert [q.answers for q in got.queries] == answers
  assert all(q.choices == () for q in got.queries)
  assert got.privacy.shape == (len(ids), 0) and got.privacy.dtype == np.float32
  assert got.labels.dtype == np.int32 and (got.labels == -1).all()
  assert got.attribute_names == () and got.class_names == ()
  assert "tensorflow" not in sys.modules


def test_stored_fields_and_config_name(manual_dir, data_dir):
  okvqa.load_split("train", data_dir=data_dir, manual_dir=manual_dir, image_size=SIZE)
  builder = okvqa.AnonymaxOkvqa(config=okvqa.make_config(image_size=SIZE), data_dir=data_dir)
  assert builder.builder_config.name == "s16_all"
  source = builder.as_data_source(split="train")
  assert [int(source[i]["question_id"]) for i in range(3)] == [90, 91, 250]
  assert [int(source[i]["image_id"]) for i in range(3)] == [9, 9, 25]
  qtypes = [source[i]["question_type"] for i in range(3)]
  assert [q.decode() if isinstance(q, bytes) else q for q in qtypes] == ["four", "seven", "one"]


def test_categories_keep_only_the_chosen_words(manual_dir, data_dir):
  kw = {"data_dir": data_dir, "manual_dir": manual_dir, "image_size": SIZE}
  train = okvqa.load_split("train", categories=("seven", "four"), **kw)
  test = okvqa.load_split("test", categories=("four", "seven"), **kw)
  assert [q.prompt for q in train.queries] == [TRAIN[90][1], TRAIN[91][1]]
  assert [q.prompt for q in test.queries] == [TEST[420][1]]
  np.testing.assert_array_equal(test.visuals, _expected(manual_dir, "test", TEST, [420])[0])
  # Both orders name (and share) one build.
  root = pathlib.Path(data_dir) / "anonymax_okvqa"
  assert (root / "s16_four-seven").is_dir()
  assert okvqa.make_config(image_size=SIZE, categories=("seven", "four")).name == "s16_four-seven"


def test_categories_without_questions_fail_clearly(manual_dir, tmp_path):
  with pytest.raises(ValueError, match=r"categories=\('ten',\): no question of mscoco_train2014"):
    okvqa.load_split(
      "train", data_dir=str(tmp_path), manual_dir=manual_dir, image_size=SIZE, categories=("ten",)
    )


def test_num_examples_and_slices(manual_dir, data_dir):
  kw = {"data_dir": data_dir, "manual_dir": manual_dir, "image_size": SIZE}
  head = okvqa.load_split("train", num_examples=2, **kw)
  assert [q.prompt for q in head.queries] == [TRAIN[90][1], TRAIN[91][1]]
  assert okvqa.load_split("train", num_examples=50, **kw).visuals.shape[0] == 3
  tail = okvqa.load_split("train[1:]", num_examples=1, **kw)
  assert [q.prompt for q in tail.queries] == [TRAIN[91][1]]
  sliced = okvqa.load_split("test[:1]", **kw)
  assert [q.prompt for q in sliced.queries] == [TEST[420][1]]


def test_pipeline_dispatches_to_okvqa(manual_dir, data_dir):
  split = pipeline.load_split(
    "okvqa", "train", data_dir=data_dir, manual_dir=manual_dir, image_size=SIZE
  )
  direct = okvqa.load_split("train", data_dir=data_dir, manual_dir=manual_dir, image_size=SIZE)
  np.testing.assert_array_equal(split.visuals, direct.visuals)
  assert split.queries == direct.queries


def test_missing_files_are_listed_with_their_paths(broken, tmp_path):
  (broken / "mscoco_val2014_annotations.json").unlink()
  shutil.rmtree(broken / "train2014")
  with pytest.raises(ValueError, match="OK-VQA: missing") as e:
    okvqa.load_split("test", data_dir=str(tmp_path / "tfds"), manual_dir=broken, image_size=SIZE)
  message = str(e.value)
  assert str(broken / "mscoco_val2014_annotations.json") in message
  assert str(broken / "train2014") + "/" in message
  assert str(broken / "mscoco_train2014_annotations.json,") not in message  # present: not listed
  assert okvqa.HOMEPAGE in message and "\n" not in message


def test_default_manual_dir_is_under_data_dir(tmp_path):
  with pytest.raises(ValueError, match="OK-VQA: missing") as e:
    okvqa.load_split("train", data_dir=str(tmp_path), image_size=SIZE)
  assert str(tmp_path / "downloads" / "manual" / "val2014") in str(e.value)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_bad_image_names_its_file(broken, tmp_path, damage):
  path = okvqa.image_path(broken, "test", 73)
  if damage == "corrupt":
    path.write_bytes(b"not a jpeg at all")
  else:
    path.unlink()
  with pytest.raises(ValueError, match="question_id 730") as e:
    okvqa.load_split("test", data_dir=str(tmp_path / "tfds"), manual_dir=broken, image_size=SIZE)
  assert str(path) in str(e.value)


def test_question_without_annotation_names_the_question_id(broken, tmp_path):
  a_path = broken / "mscoco_train2014_annotations.json"
  data = json.loads(a_path.read_text())
  data["annotations"] = [a for a in data["annotations"] if a["question_id"] != 250]
  a_path.write_text(json.dumps(data))
  with pytest.raises(ValueError, match="question_id 250") as e:
    okvqa.load_split("train", data_dir=str(tmp_path / "tfds"), manual_dir=broken, image_size=SIZE)
  assert str(a_path) in str(e.value)


def test_config_naming_validation_and_registered_reuse():
  assert okvqa.make_config() is okvqa.AnonymaxOkvqa.BUILDER_CONFIGS[0]
  assert okvqa.make_config().name == "s224_all"
  four_seven = okvqa.make_config(categories=("seven", "four", "four"))
  assert four_seven is okvqa.AnonymaxOkvqa.BUILDER_CONFIGS[1]
  assert four_seven.name == "s224_four-seven" and four_seven.categories == ("four", "seven")
  assert okvqa.CATEGORIES["four"] == "Sports and Recreation"
  assert okvqa.CATEGORIES["seven"].startswith("People and Everyday")
  assert len(okvqa.CATEGORIES) == 11


@pytest.mark.parametrize(
  "kwargs, field",
  [
    ({"categories": ("eleven",)}, "categories"),
    ({"categories": "four"}, "categories"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": 12.5}, "image_size"),
    ({"num_examples": 0}, "num_examples"),
  ],
)
def test_bad_options_name_the_field(tmp_path, kwargs, field):
  with pytest.raises(ValueError, match=field):
    okvqa.load_split("train", data_dir=str(tmp_path), **kwargs)
  assert not (tmp_path / "anonymax_okvqa").exists()


def test_bad_split_is_refused(tmp_path):
  with pytest.raises(ValueError, match="split"):
    okvqa.load_split("val", data_dir=str(tmp_path))
