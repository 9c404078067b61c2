"""VISPR (Orekondy et al., "Towards a Visual Privacy Advisor", ICCV 2017): multi-label privacy attributes.

Only the privacy side of the protocol comes from VISPR: each image carries a multi-hot vector of
privacy attributes (face, gender, skin colour, nudity, relationships, documents, ...). VISPR asks no
question, so every example gets the same placeholder `QUERY` (see below); utility is measured on
other datasets.

The dataset cannot be downloaded here: the user extracts the release into a manual directory
(default ``<data_dir>/downloads/manual``, or ``manual_dir=``) laid out as the release is::

  <manual_dir>/
    images/train2017/2017_10000001.jpg     images/test2017/...     (images/val2017/: unused)
    annotations/train2017/2017_10000001.json
    annotations/test2017/...               (annotations/val2017/: unused)

One JSON file per image, e.g.::

  {"id": "2017_10000001",
   "image_path": "images/train2017/2017_10000001.jpg",
   "labels": ["a1_age_approx", "a4_gender", "a9_face_complete", "a17_color"]}

``image_path`` is relative to the manual directory (the release root). A file without ``id`` takes
its name (``2017_10000001``) as the id; one without ``image_path`` points to
``images/<split folder>/<id>.jpg``. ``labels`` lists attribute ids; ``["a0_safe"]`` marks an image
with no private content (``a0_safe`` is never a target: such an image has an all-zero vector).

Splits: our ``"train"`` is VISPR's ``train2017`` (10,000 images) and ``"test"`` is ``test2017``.
``val2017`` is not used (`anonymax.data.records` knows train and test only). Both folders of
annotations are needed to build the dataset; images are read only when listed.

Attribute sets (config field ``attributes``):
  * ``"paper"`` (default): `PAPER_ATTRIBUTES`, the 7 attributes used by prior work (and by the
    synthetic benchmark). Other label ids are ignored.
  * ``"all"``: `ALL_ATTRIBUTES`, every VISPR privacy attribute (67), sorted by attribute number. The
    release's 68 attribute ids are these 67 plus ``a0_safe`` (its ``attributes.tsv`` numbers them
    0..67, ``a0_safe`` included). A label outside this list is an error, since it would mean the
    files are not the release this list was made for.
  * ``"pa_hmdb51"``: PA-HMDB51's five attributes (`PA_HMDB51_ATTRIBUTES`), each the union of
    VISPR attributes of the paper set. This is the one place the VISPR → PA-HMDB51 mapping lives:

      ============  =====================================  =======================================
      PA-HMDB51     VISPR (label 1 iff any of them is)     PA-HMDB51's own rule (its annotations)
      ============  =====================================  =======================================
      skin_color    a17_color                              any skin colour identifiable
      face          a9_face_complete, a10_face_partial     face partly or completely visible
      gender        a4_gender                              gender identifiable
      nudity        a12_semi_nudity                        level 1 (short sleeves/shorts) or 2
      relationship  a64_rel_personal, a65_rel_social       relationship can be told
      ============  =====================================  =======================================

    It is the grouping of Wu et al. (TPAMI 2020; their release's ``attributes_pa_hmdb51.csv``),
    who train on VISPR with these five labels and test on PA-HMDB51. The seven VISPR attributes of
    prior work are exactly the ones PA-HMDB51 annotates, split finer (complete/partial face,
    personal/social relationship), so merging them loses nothing PA-HMDB51 could score. Nudity is
    the one loose fit: PA-HMDB51 counts level 1 (short sleeves, shorts) as present, VISPR's
    semi-nudity is closer to its level 2. A run judged on PA-HMDB51 trains its reviewer and its
    judges on these merged labels, so training and test label spaces are the same five columns.
    Read from the ``"paper"`` build (no second decoding of the images).

`Vispr` is the TFDS builder (``vispr``; array_record files, no TensorFlow needed to build or
read). Images are decoded once at build time with `imaging.load_image` (shorter side to S, centre
crop) and stored as uint8 [S, S, 3]; examples are sorted by id. A config is built once per
``data_dir``: later changes to the manual directory are not seen unless the built files are
removed.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from anonymax.data import imaging
from anonymax.data.builder import ArrayRecordBuilder
from anonymax.data.records import Split, read_records
from anonymax.types import Query

__all__ = [
  "ALL_ATTRIBUTES",
  "ATTRIBUTE_SETS",
  "PAPER_ATTRIBUTES",
  "PA_HMDB51_ATTRIBUTES",
  "QUERY",
  "SAFE_LABEL",
  "SPLIT_FOLDERS",
  "Vispr",
  "VisprConfig",
  "load_split",
  "make_config",
  "multi_hot",
  "read_annotations",
  "source_ids",
]

SAFE_LABEL = "a0_safe"  # "no private attribute": never a target
PAPER_ATTRIBUTES = (
  "a4_gender",
  "a9_face_complete",
  "a10_face_partial",
  "a12_semi_nudity",
  "a17_color",
  "a64_rel_personal",
  "a65_rel_social",
)
ALL_ATTRIBUTES = (
  "a1_age_approx",
  "a2_weight_approx",
  "a3_height_approx",
  "a4_gender",
  "a5_eye_color",
  "a6_hair_color",
  "a7_fingerprint",
  "a8_signature",
  "a9_face_complete",
  "a10_face_partial",
  "a11_tattoo",
  "a12_semi_nudity",
  "a13_full_nudity",
  "a16_race",
  "a17_color",
  "a18_ethnic_clothing",
  "a19_name_full",
  "a20_name_first",
  "a21_name_last",
  "a23_birth_city",
  "a24_birth_date",
  "a25_nationality",
  "a26_handwriting",
  "a27_marital_status",
  "a29_ausweis",
  "a30_credit_card",
  "a31_passport",
  "a32_drivers_license",
  "a33_student_id",
  "a35_mail",
  "a37_receipt",
  "a38_ticket",
  "a39_disability_physical",
  "a41_injury",
  "a43_medicine",
  "a46_occupation",
  "a48_occassion_work",  # sic: the release spells it so
  "a49_phone",
  "a55_religion",
  "a56_sexual_orientation",
  "a57_culture",
  "a58_hobbies",
  "a59_sports",
  "a60_occassion_personal",  # sic
  "a61_opinion_general",
  "a62_opinion_political",
  "a64_rel_personal",
  "a65_rel_social",
  "a66_rel_professional",
  "a67_rel_competitors",
  "a68_rel_spectators",
  "a69_rel_views",
  "a70_education_history",
  "a73_landmark",
  "a74_address_current_complete",
  "a75_address_current_partial",
  "a78_address_home_complete",
  "a79_address_home_partial",
  "a82_date_time",
  "a85_username",
  "a90_email",
  "a92_email_content",
  "a97_online_conversation",
  "a99_legal_involvement",
  "a102_vehicle_ownership",
  "a103_license_plate_complete",
  "a104_license_plate_partial",
)
# PA-HMDB51's attributes (in `pa_hmdb51_annotations.ATTRIBUTES` order) → the VISPR ids each merges.
PA_HMDB51_ATTRIBUTES = {
  "skin_color": ("a17_color",),
  "face": ("a9_face_complete", "a10_face_partial"),
  "gender": ("a4_gender",),
  "nudity": ("a12_semi_nudity",),
  "relationship": ("a64_rel_personal", "a65_rel_social"),
}
ATTRIBUTE_SETS = {
  "paper": PAPER_ATTRIBUTES,
  "all": ALL_ATTRIBUTES,
  "pa_hmdb51": tuple(PA_HMDB51_ATTRIBUTES),
}
# The build a set is read from: a merged set needs no build of its own.
_BUILT_FROM = {"paper": "paper", "all": "all", "pa_hmdb51": "paper"}
# Our split name -> the release's folder under images/ and annotations/ (val2017 is unused).
SPLIT_FOLDERS = {"train": "train2017", "test": "test2017"}
# VISPR has no question. `Split` holds one Query per visual and Query needs at least one reference
# answer, so every example carries this placeholder; no utility loss is meant to be computed on it.
QUERY = Query("Describe the image.", ("",))

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Extract the VISPR 2017 release (https://tribhuvanesh.github.io/vpa/) into the manual directory so
that it holds annotations/train2017/*.json, annotations/test2017/*.json and the images they list
(images/train2017/*.jpg, images/test2017/*.jpg). val2017 is not used.
"""


def _check_attributes(attributes: str) -> None:
  if not isinstance(attributes, str) or attributes not in ATTRIBUTE_SETS:
    raise ValueError(f"attributes={attributes!r}: must be one of {tuple(ATTRIBUTE_SETS)}")


def source_ids(attributes: str) -> tuple[tuple[str, ...], ...]:
  """The VISPR ids behind each attribute of a set: itself for a VISPR id, the union for pa_hmdb51."""
  _check_attributes(attributes)
  if attributes == "pa_hmdb51":
    return tuple(PA_HMDB51_ATTRIBUTES.values())
  return tuple((a,) for a in ATTRIBUTE_SETS[attributes])


def multi_hot(labels, attributes: str) -> np.ndarray:
  """float32 [P] over ``ATTRIBUTE_SETS[attributes]``: y_j = 1 iff `labels` (VISPR ids) hold one
  of attribute j's `source_ids` (a label outside the set is ignored; ``a0_safe`` gives zeros)."""
  present = set(labels)
  return np.array([any(i in present for i in ids) for ids in source_ids(attributes)], np.float32)


def _merge(privacy: np.ndarray, names: tuple[str, ...], attributes: str) -> np.ndarray:
  """[N, len(names)] multi-hot over VISPR ids → [N, P] over the set: y_j = max_{i ∈ ids_j} y_i."""
  columns = [[names.index(i) for i in ids] for ids in source_ids(attributes)]
  out = np.zeros((privacy.shape[0], len(columns)), np.float32)
  for j, idx in enumerate(columns):
    out[:, j] = privacy[:, idx].max(axis=1) if privacy.shape[0] else 0.0
  return out


def _check_fields(image_size: int, attributes: str) -> None:
  if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
    raise ValueError(f"image_size={image_size!r}: must be an integer >= 1")
  _check_attributes(attributes)


def _check_manual_dir(manual_dir: str) -> None:
  """Raises one ValueError naming every missing annotation folder."""
  missing = [
    os.path.join(manual_dir, "annotations", folder)
    for folder in SPLIT_FOLDERS.values()
    if not os.path.isdir(os.path.join(manual_dir, "annotations", folder))
  ]
  if missing:
    raise ValueError(
      f"VISPR manual dir {manual_dir}: missing {', '.join(missing)}; extract the VISPR 2017 "
      "release there (annotations/<split>2017/<id>.json, one JSON per image, and the images "
      "they list under images/<split>2017/)"
    )


def read_annotations(manual_dir: str, split: str, attributes: str = "paper") -> list[dict]:
  """Reads and checks the annotations of one split, sorted by id.

  Args:
    manual_dir: the release root (holds ``annotations/`` and ``images/``).
    split: ``"train"`` or ``"test"``.
    attributes: ``"paper"``, ``"all"`` or ``"pa_hmdb51"`` (the order of ``"privacy"``).

  Returns:
    One dict per image: ``"id"`` str, ``"image"`` (path of an existing file), ``"privacy"``
    float32 [P] multi-hot in ``ATTRIBUTE_SETS[attributes]`` order, ``"source"`` (the JSON path).

  Raises:
    ValueError: naming the file, for an annotation that is not valid JSON, has no list of string
      ``labels``, repeats another file's id or lists a missing image; with ``attributes="all"``,
      naming the file and the label, for a label that is not a VISPR attribute id.
  """
  if split not in SPLIT_FOLDERS:
    raise ValueError(f"split={split!r}: must be one of {tuple(SPLIT_FOLDERS)}")
  _check_attributes(attributes)
  _check_manual_dir(manual_dir)
  folder = SPLIT_FOLDERS[split]
  anno_dir = os.path.join(manual_dir, "annotations", folder)
  names = sorted(f for f in os.listdir(anno_dir) if f.endswith(".json"))
  if not names:
    raise ValueError(f"{anno_dir}: holds no .json annotation file")
  known = set(ALL_ATTRIBUTES) | {SAFE_LABEL}
  seen: dict[str, str] = {}
  out = []
  for name in names:
    path = os.path.join(anno_dir, name)
    try:
      with open(path, encoding="utf-8") as f:
        anno = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None
    labels = anno.get("labels") if isinstance(anno, dict) else None
    if not isinstance(labels, list) or not all(isinstance(a, str) for a in labels):
      raise ValueError(f"{path}: no 'labels' list of attribute ids")
    image_id = str(anno.get("id", name[: -len(".json")]))
    if image_id in seen:
      raise ValueError(f"{path}: id {image_id!r} already used by {seen[image_id]}")
    seen[image_id] = path
    rel = anno.get("image_path") or os.path.join("images", folder, f"{image_id}.jpg")
    image = os.path.join(manual_dir, rel)
    if not os.path.isfile(image):
      raise ValueError(f"{image}: image file not found (listed by {path})")
    unknown = [label for label in labels if label not in known]
    if attributes == "all" and unknown:
      raise ValueError(f"{path}: unknown VISPR attribute {unknown[0]!r} (see vispr.ALL_ATTRIBUTES)")
    privacy = multi_hot(labels, attributes)
    out.append({"id": image_id, "image": image, "privacy": privacy, "source": path})
  out.sort(key=lambda r: r["id"])
  return out


# --------------------------------------------------------------------------------------------------
# TFDS builder.


@dataclasses.dataclass
class VisprConfig(tfds.core.BuilderConfig):
  """A variant of the dataset; every field is encoded in the config name."""

  image_size: int = 224
  attributes: str = "paper"


def _new_config(image_size: int, attributes: str) -> VisprConfig:
  _check_fields(image_size, attributes)
  return VisprConfig(
    name=f"{attributes}_s{int(image_size)}",
    description=(
      f"{len(ATTRIBUTE_SETS[attributes])} privacy attributes ({attributes}), "
      f"{int(image_size)}px centre crops"
    ),
    image_size=int(image_size),
    attributes=attributes,
  )


_DEFAULT_CONFIGS = (_new_config(224, "paper"), _new_config(224, "all"))


def make_config(*, image_size: int = 224, attributes: str = "paper") -> VisprConfig:
  """A validated `VisprConfig` named ``<attributes>_s<image_size>`` (e.g. ``paper_s224``).

  A merged set is read from the build of the set it merges (``"pa_hmdb51"``: ``paper_s<S>``).
  Returns the registered instance when the name is one of `Vispr.BUILDER_CONFIGS` (TFDS refuses an
  equal but distinct config object of a registered name).
  """
  _check_attributes(attributes)
  cfg = _new_config(image_size, _BUILT_FROM[attributes])
  return next((c for c in _DEFAULT_CONFIGS if c.name == cfg.name), cfg)


class Vispr(ArrayRecordBuilder):
  """TFDS builder of VISPR's privacy labels (``vispr``), stored as array_record.

  Features: ``"image"`` uint8 [S, S, 3] (raw bytes, as in the synthetic builder), ``"privacy"``
  float32 [P] multi-hot in ``ATTRIBUTE_SETS[attributes]`` order, ``"id"`` the VISPR image id.
  """

  BUILDER_CONFIGS = list(_DEFAULT_CONFIGS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    s = cfg.image_size
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(
            shape=(s, s, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
          ),
          "privacy": tfds.features.Tensor(
            shape=(len(ATTRIBUTE_SETS[cfg.attributes]),), dtype=np.float32
          ),
          "id": tfds.features.Tensor(shape=(), dtype=np.object_),
        }
      ),
      homepage="https://tribhuvanesh.github.io/vpa/",
      # Keep the generation order (sorted by id) when reading back.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError:
      # TFDS asserts that the manual dir exists and is not empty; report the expected layout
      # instead (the private attribute is the only place that holds the path).
      manual_dir = os.fspath(dl_manager._manual_dir)
    _check_manual_dir(manual_dir)
    # Every annotation is read and checked before any image is decoded.
    records = {
      split: read_annotations(manual_dir, split, self.builder_config.attributes)
      for split in SPLIT_FOLDERS
    }
    return {split: self._generate_examples(recs) for split, recs in records.items()}

  def _generate_examples(self, records: list[dict]):
    size = self.builder_config.image_size
    for i, r in enumerate(records):
      try:
        image = imaging.load_image(r["image"], size)
      except ValueError as e:
        raise ValueError(f"{e} (listed by {r['source']})") from None
      yield i, {"image": image, "privacy": r["privacy"], "id": r["id"]}


def load_split(
  split: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  image_size: int = 224,
  attributes: str = "paper",
  num_examples: int | None = None,
) -> Split:
  """Loads one VISPR split into memory, building the TFDS dataset first if missing.

  Args:
    split: ``"train"`` or ``"test"``, optionally sliced as TFDS allows (``"train[:100]"``).
    data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    manual_dir: the extracted release (default: ``<data_dir>/downloads/manual``); read only
      when the config is not built yet.
    image_size: side S of the centre crops.
    attributes: ``"paper"`` (7 attributes), ``"all"`` (67) or ``"pa_hmdb51"`` (PA-HMDB51's 5,
      merged from the paper set; see the module docstring).
    num_examples: keep the first N examples of the split (None: all).

  Returns:
    A `Split`: visuals uint8 [N, S, S, 3], privacy float32 [N, P],
    queries ``[QUERY] * N``, labels -1, attribute_names the P names of the set, class_names ().
  """
  config = make_config(image_size=image_size, attributes=attributes)
  records = read_records(
    Vispr.name,
    config,
    split,
    data_dir=data_dir,
    manual_dir=manual_dir,
    num_examples=num_examples,
  )
  n = len(records)
  s = config.image_size
  built = ATTRIBUTE_SETS[config.attributes]
  visuals = np.stack([r["image"] for r in records]) if records else np.zeros((0, s, s, 3), np.uint8)
  privacy = np.array([r["privacy"] for r in records], np.float32).reshape(-1, len(built))
  names = ATTRIBUTE_SETS[attributes]
  if names != built:
    privacy = _merge(privacy, built, attributes)
  return Split(
    visuals=visuals,
    privacy=privacy,
    queries=[QUERY] * n,
    labels=np.full(n, -1, np.int32),
    attribute_names=names,
    class_names=(),
  )
