"""OK-VQA (Marino et al., CVPR 2019): knowledge-based VQA on COCO images, read from a manual dir.

Nothing is downloaded: the user puts the OK-VQA v1.1 files (https://okvqa.allenai.org) and the COCO
2014 images (https://cocodataset.org) into the TFDS manual dir (by default
``<data_dir>/downloads/manual``):

  ============================================  ===================================================
  OpenEnded_mscoco_train2014_questions.json     ``{"questions": [{"image_id": int, "question": str,
  OpenEnded_mscoco_val2014_questions.json       "question_id": int}, ...]}`` (plus ``license``,
                                                ``data_subtype``, ``task_type``).
  mscoco_train2014_annotations.json             ``{"annotations": [{"image_id", "question_id",
  mscoco_val2014_annotations.json               "question_type": "four", "answer_type": "other",
                                                "answers": [{"answer_id": 1..10, "raw_answer",
                                                "answer_confidence", "answer"}, x10],
                                                "confidence": int}, ...]}`` (plus ``license``,
                                                ``data_subtype``, ``info``, ``question_types``:
                                                the category word -> name table of `CATEGORIES`).
  train2014/COCO_train2014_{image_id:012d}.jpg  COCO 2014 train images.
  val2014/COCO_val2014_{image_id:012d}.jpg      COCO 2014 val images.
  ============================================  ===================================================

Splits: our ``"train"`` is OK-VQA train (train2014 images), our ``"test"`` is OK-VQA val (val2014
images; OK-VQA has no separate test set). Each example is one question, in question_id order; a
COCO image asked about several times is stored once per question. The reference answers are the
ten normalised ``answer`` strings (not ``raw_answer``), as the VQA accuracy metric uses them.

The knowledge categories are the ``question_type`` words of the annotations (`CATEGORIES`); a
config may keep only some of them (e.g. ``("four", "seven")``: Sports and Recreation, People and
Everyday Life).

OK-VQA has no privacy labels of its own: `load_split` returns ``privacy`` of shape [N, 0] unless
it is given the paper's privacy annotation of the test images (``privacy_annotations=``, read by
`okvqa_privacy`; then [N, P] in the order of the VISPR attribute set ``attributes``). ``labels``
are -1; ``question_types`` are the question_type words.

`AnonymaxOkvqa` is the TFDS builder (array_record files, no TensorFlow needed to build or read):
images are decoded with Pillow and centre-cropped to S×S (`imaging.load_image`) at build time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from anonymax.data import imaging, okvqa_privacy, vispr
from anonymax.data.builder import ArrayRecordBuilder
from anonymax.data.records import Split, read_records, text
from anonymax.types import Query

__all__ = [
  "CATEGORIES",
  "HOMEPAGE",
  "NUM_ANSWERS",
  "SPLIT_SOURCES",
  "AnonymaxOkvqa",
  "OkvqaConfig",
  "check_manual_dir",
  "image_path",
  "load_split",
  "make_config",
  "read_questions",
]

HOMEPAGE = "https://okvqa.allenai.org"
# The ``question_type`` words of the annotation files and the knowledge categories they stand for,
# as the files' own ``question_types`` table spells them: the paper's ten categories, then "other".
CATEGORIES = {
  "one": "Vehicles and Transportation",
  "two": "Brands, Companies and Products",
  "three": "Objects, Material and Clothing",
  "four": "Sports and Recreation",
  "five": "Cooking and Food",
  "six": "Geography, History, Language and Culture",
  "seven": "People and Everyday life",
  "eight": "Plants and Animals",
  "nine": "Science and Technology",
  "ten": "Weather and Climate",
  "other": "Other",
}
NUM_ANSWERS = 10
# Our split -> (questions file, annotations file, COCO image folder = file name prefix).
SPLIT_SOURCES = {
  "train": (
    "OpenEnded_mscoco_train2014_questions.json",
    "mscoco_train2014_annotations.json",
    "train2014",
  ),
  "test": (
    "OpenEnded_mscoco_val2014_questions.json",
    "mscoco_val2014_annotations.json",
    "val2014",
  ),
}
_REQUIRED = (
  *(f for q, a, _ in SPLIT_SOURCES.values() for f in (q, a)),
  *(f"{folder}/" for _, _, folder in SPLIT_SOURCES.values()),
)
_PLACEMENT = (
  "put the OK-VQA v1.1 JSON files "
  + ", ".join(f for f in _REQUIRED if f.endswith(".json"))
  + f" ({HOMEPAGE}) and the COCO 2014 image folders train2014/ and val2014/"
  " (https://cocodataset.org) in"
)


def _check_fields(image_size, categories) -> tuple[int, tuple[str, ...]]:
  """Validated (image_size, categories in `CATEGORIES` order, duplicates dropped)."""
  if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
    raise ValueError(f"image_size={image_size!r}: must be an integer >= 1")
  if isinstance(categories, str):
    raise ValueError(f"categories={categories!r}: must be a tuple of question_type words")
  unknown = [c for c in categories if c not in CATEGORIES]
  if unknown:
    raise ValueError(
      f"categories={tuple(categories)!r}: unknown question_type {unknown[0]!r}; known: "
      f"{tuple(CATEGORIES)}"
    )
  return int(image_size), tuple(c for c in CATEGORIES if c in categories)


def image_path(manual_dir: str | os.PathLike, split: str, image_id: int) -> pathlib.Path:
  """The COCO image file of `image_id` for our `split` ("train" or "test")."""
  folder = SPLIT_SOURCES[split][2]
  return pathlib.Path(manual_dir) / folder / f"COCO_{folder}_{int(image_id):012d}.jpg"


def check_manual_dir(manual_dir: str | os.PathLike) -> None:
  """Raises one ValueError listing every missing file or folder of the manual dir (with paths)."""
  root = pathlib.Path(manual_dir)
  missing = []
  for name in _REQUIRED:
    folder = name.endswith("/")
    path = root / name.rstrip("/")
    if not (path.is_dir() if folder else path.is_file()):
      missing.append(f"{path}/" if folder else str(path))
  if missing:
    raise ValueError(f"OK-VQA: missing {', '.join(missing)}; {_PLACEMENT} {root}")


def _read_json(path: pathlib.Path, key: str) -> list[dict]:
  try:
    data = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: not a readable JSON file ({e})") from None
  if not isinstance(data, dict) or not isinstance(data.get(key), list):
    raise ValueError(f"{path}: expected a JSON object with a {key!r} list")
  return data[key]


def read_questions(
  manual_dir: str | os.PathLike, split: str, categories: tuple[str, ...] = ()
) -> list[dict]:
  """The questions of our `split` joined with their annotations, sorted by question_id.

  Args:
    manual_dir: the directory holding the OK-VQA files (see the module docstring).
    split: ``"train"`` (OK-VQA train) or ``"test"`` (OK-VQA val).
    categories: question_type words to keep; empty keeps all.

  Returns:
    One dict per question: ``question_id``, ``image_id`` (ints), ``question``,
    ``question_type`` (str) and ``answers`` (the ten ``answer`` strings, in answer_id order).

  Raises:
    ValueError: naming the file (and the question_id) of a malformed or unmatched entry.
  """
  q_name, a_name, _ = SPLIT_SOURCES[split]
  root = pathlib.Path(manual_dir)
  q_path, a_path = root / q_name, root / a_name
  annotations = {}
  for ann in _read_json(a_path, "annotations"):
    try:
      annotations[int(ann["question_id"])] = ann
    except (KeyError, TypeError, ValueError):
      raise ValueError(f"{a_path}: an annotation without an integer question_id") from None
  out, seen = [], set()
  for q in _read_json(q_path, "questions"):
    try:
      qid, image_id, text = int(q["question_id"]), int(q["image_id"]), str(q["question"])
    except (KeyError, TypeError, ValueError):
      raise ValueError(f"{q_path}: a question lacks question_id, image_id or question") from None
    if qid in seen:
      raise ValueError(f"{q_path}: question_id {qid} appears twice")
    seen.add(qid)
    ann = annotations.get(qid)
    if ann is None:
      raise ValueError(f"{a_path}: no annotation for question_id {qid} (from {q_path.name})")
    if int(ann.get("image_id", image_id)) != image_id:
      raise ValueError(
        f"{a_path}: question_id {qid} has image_id {ann['image_id']}, "
        f"but {q_path.name} says {image_id}"
      )
    qtype = ann.get("question_type")
    if qtype not in CATEGORIES:
      raise ValueError(f"{a_path}: question_id {qid} has unknown question_type {qtype!r}")
    answers = ann.get("answers")
    if not isinstance(answers, list) or len(answers) != NUM_ANSWERS:
      raise ValueError(f"{a_path}: question_id {qid} must have {NUM_ANSWERS} answers")
    try:
      # answer_id order (1..10); files list them so, but the order is not relied upon.
      answers = sorted(answers, key=lambda a: int(a.get("answer_id", 0)))
      texts = [str(a["answer"]) for a in answers]
    except (KeyError, TypeError, ValueError, AttributeError):
      raise ValueError(f"{a_path}: question_id {qid} has an answer without 'answer'") from None
    if categories and qtype not in categories:
      continue
    out.append(
      {
        "question_id": qid,
        "image_id": image_id,
        "question": text,
        "question_type": qtype,
        "answers": texts,
      }
    )
  out.sort(key=lambda r: r["question_id"])
  return out


# --------------------------------------------------------------------------------------------------
# TFDS builder.


@dataclasses.dataclass
class OkvqaConfig(tfds.core.BuilderConfig):
  """A variant of OK-VQA; every field is encoded in the config name."""

  image_size: int = 224
  categories: tuple[str, ...] = ()  # question_type words kept; empty = all


def _new_config(image_size, categories) -> OkvqaConfig:
  image_size, categories = _check_fields(image_size, categories)
  kept = "-".join(categories) if categories else "all"
  names = ", ".join(CATEGORIES[c] for c in categories) if categories else "all categories"
  return OkvqaConfig(
    name=f"s{image_size}_{kept}",
    description=f"{image_size}px, {names}",
    image_size=image_size,
    categories=categories,
  )


# The registered variants: every category, and the two person-centred ones (Sports and Recreation,
# People and Everyday life).
_DEFAULT_CONFIGS = (_new_config(224, ()), _new_config(224, ("four", "seven")))


def make_config(*, image_size: int = 224, categories: tuple[str, ...] = ()) -> OkvqaConfig:
  """A validated `OkvqaConfig` named e.g. ``s224_all`` or ``s224_four-seven``.

  Categories are named in `CATEGORIES` order whatever order they are given in, so equal selections
  share one build. Returns the registered instance when the name is one of
  `AnonymaxOkvqa.BUILDER_CONFIGS` (TFDS refuses an equal but distinct config of a registered name).
  """
  cfg = _new_config(image_size, categories)
  return next((c for c in _DEFAULT_CONFIGS if c.name == cfg.name), cfg)


class AnonymaxOkvqa(ArrayRecordBuilder):
  """TFDS builder of OK-VQA (``anonymax_okvqa``) from the manual dir, stored as array_record.

  Images are uint8 S×S tensors stored as raw bytes and strings are object tensors, so building and
  reading (`tfds.data_source`) never import TensorFlow. The JSON files are checked before any image
  is decoded; a question whose image is missing or unreadable fails the build with the file named
  (a silently smaller split would change the benchmark).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release (OK-VQA v1.1 questions and annotations)."}
  BUILDER_CONFIGS = list(_DEFAULT_CONFIGS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Download the OK-VQA v1.1 questions and annotations from {HOMEPAGE} and the COCO 2014 train and
  val images from https://cocodataset.org, unzip them, and place in the manual dir:
    OpenEnded_mscoco_train2014_questions.json, OpenEnded_mscoco_val2014_questions.json,
    mscoco_train2014_annotations.json, mscoco_val2014_annotations.json,
    train2014/COCO_train2014_*.jpg, val2014/COCO_val2014_*.jpg
  """

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(
            shape=(s, s, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
          ),
          "question": tfds.features.Tensor(shape=(), dtype=np.object_),
          "answers": tfds.features.Tensor(shape=(NUM_ANSWERS,), dtype=np.object_),
          "question_type": tfds.features.Tensor(shape=(), dtype=np.object_),
          "question_id": tfds.features.Tensor(shape=(), dtype=np.int64),
          "image_id": tfds.features.Tensor(shape=(), dtype=np.int64),
        }
      ),
      homepage=HOMEPAGE,
      # Keep question_id order: a split slice is then the same questions on every machine.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError:
      # TFDS refuses a missing or empty manual dir with a generic message; ours names every file.
      manual_dir = dl_manager._manual_dir
    check_manual_dir(manual_dir)
    # Join every split's JSON first, so a malformed file fails before any image is decoded.
    cats = self.builder_config.categories
    questions = {split: read_questions(manual_dir, split, cats) for split in SPLIT_SOURCES}
    for split, rows in questions.items():
      if not rows:
        # TFDS cannot write an empty split; say why instead of its generic assertion.
        raise ValueError(
          f"categories={cats!r}: no question of {SPLIT_SOURCES[split][1]} in {manual_dir} "
          f"(split {split!r}) has these question_types"
        )
    return {
      split: self._generate_examples(manual_dir, split, rows) for split, rows in questions.items()
    }

  def _generate_examples(self, manual_dir, split: str, rows: list[dict]):
    size = self.builder_config.image_size

    # Questions on one image are adjacent in question_id order (OK-VQA ids are image_id·10 + k),
    # so a small cache decodes each image once.
    @functools.lru_cache(maxsize=16)
    def image(image_id: int) -> np.ndarray:
      return imaging.load_image(os.fspath(image_path(manual_dir, split, image_id)), size)

    for row in rows:
      try:
        pixels = image(row["image_id"])
      except ValueError as e:
        raise ValueError(f"OK-VQA question_id {row['question_id']}: {e}") from None
      example = {**row, "image": pixels, "answers": np.array(row["answers"], dtype=object)}
      yield row["question_id"], example


# --------------------------------------------------------------------------------------------------
# Loading.


def load_split(
  split: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | os.PathLike | None = None,
  image_size: int = 224,
  categories: tuple[str, ...] = (),
  num_examples: int | None = None,
  privacy_annotations: str | None = None,
  attributes: str = "paper",
  unique_images: bool = False,
) -> Split:
  """One OK-VQA split in memory, building the TFDS dataset from the manual dir first if missing.

  Args:
    split: ``"train"`` (OK-VQA train) or ``"test"`` (OK-VQA val), optionally sliced as TFDS
      allows (``"train[:100]"``).
    data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    manual_dir: where the OK-VQA files are (default: ``<data_dir>/downloads/manual``); only read
      when the dataset is not built yet.
    image_size: side S of the centre-cropped images.
    categories: question_type words to keep (see `CATEGORIES`); empty keeps all.
    num_examples: keep only the first N questions (question_id order) of the (sliced) split.
    privacy_annotations: the privacy annotation file (`okvqa_privacy`); a relative path is
      relative to the manual dir (e.g. `okvqa_privacy.ANNOTATION_FILE`). None: no privacy labels.
      Every image of the split must be annotated (a missing one is an error naming the file).
    attributes: the VISPR attribute set of the labels ("paper", "all" or "pa_hmdb51"), as the
      run's VISPR split has it, so that judges trained there are scored on the same columns.
    unique_images: keep one example per image (its first question), e.g. to judge privacy on
      each image once however many questions it has.

  Returns:
    A `Split`: visuals uint8 [N, S, S, 3], privacy float32 [N, P] (P = 0 without annotation),
    queries ``Query(question, ten answers)``, labels -1, attribute_names the set's names (none
    without annotation), question_types the question_type words.
  """
  if not isinstance(unique_images, bool):
    raise ValueError(f"unique_images={unique_images!r}: must be True or False")
  if attributes not in vispr.ATTRIBUTE_SETS:
    raise ValueError(f"attributes={attributes!r}: must be one of {tuple(vispr.ATTRIBUTE_SETS)}")
  config = make_config(image_size=image_size, categories=categories)
  records = read_records(
    AnonymaxOkvqa.name,
    config,
    split,
    data_dir=data_dir,
    manual_dir=manual_dir,
    num_examples=num_examples,
  )
  if unique_images:
    first = {int(r["image_id"]): r for r in reversed(records)}  # question_id order: first wins
    records = [r for r in records if first[int(r["image_id"])] is r]
  n = len(records)
  s = config.image_size
  visuals = np.stack([r["image"] for r in records]) if records else np.zeros((0, s, s, 3), np.uint8)
  queries = [Query(text(r["question"]), tuple(text(a) for a in r["answers"])) for r in records]
  names, privacy = (), np.zeros((n, 0), np.float32)
  if privacy_annotations is not None:
    path = _annotation_path(privacy_annotations, manual_dir, data_dir, config)
    names = vispr.ATTRIBUTE_SETS[attributes]
    privacy = _privacy_of(
      records, okvqa_privacy.read_annotations(path, attributes), path, len(names)
    )
  return Split(
    visuals=visuals,
    privacy=privacy,
    queries=queries,
    labels=np.full(n, -1, np.int32),
    attribute_names=names,
    class_names=(),
    question_types=tuple(text(r["question_type"]) for r in records),
  )


def _annotation_path(name, manual_dir, data_dir, config) -> str:
  """`name` itself if absolute, else inside the manual dir (given, or TFDS's default one)."""
  if os.path.isabs(name):
    return os.fspath(name)
  if manual_dir is None:
    root = AnonymaxOkvqa(config=config, data_dir=data_dir).data_dir_root
    manual_dir = os.path.join(root, "downloads", "manual")
  return os.path.join(os.fspath(manual_dir), name)


def _privacy_of(records, labels: dict, path: str, num_attributes: int) -> np.ndarray:
  """float32 [N, P]: each record's image's labels; an unannotated image is an error."""
  missing = sorted({int(r["image_id"]) for r in records} - set(labels))
  if missing:
    raise ValueError(
      f"{path}: {len(missing)} image(s) of the split are not annotated, e.g. image id "
      f"{missing[0]} (the OK-VQA privacy annotation must cover every image judged)"
    )
  out = [labels[int(r["image_id"])] for r in records]
  return np.array(out, np.float32).reshape(len(records), num_attributes)
