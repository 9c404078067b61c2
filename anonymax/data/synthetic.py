"""The synthetic benchmark: procedural scenes with utility content and VISPR-named privacy attributes.

Two generations of scenes share the seven VISPR attribute names used by prior work
(`PRIVACY_ATTRIBUTES`). **Scenes v2** (``scenes="v2"``; `questions_v2`, `scenes_v2`)
are rooms of varied walls, floors and light with one to three people at random places and scales
and a few objects on the floor; the questions are about the main person (the largest, in front),
the number of people and the objects, and the private content sits on and beside the very parts
the questions need:

  =================  ============================================================================
  a4_gender          long hair beside the head of someone present.
  a9_face_complete   someone faces the camera (two eyes and a mouth), under their headwear.
  a10_face_partial   someone is in profile (one eye, half a mouth, a nose, hair over the rest).
  a12_semi_nudity    someone shows bare shoulders and upper chest; their shirt's colour below.
  a17_color          the main person's skin is one of three darker tones (face, neck, hands).
  a64_rel_personal   the main person holds hands with a neighbour (the joined hands).
  a65_rel_social     someone wears a badge (a card with a photo) on the chest.
  =================  ============================================================================

Every image-level bit is drawn independently of the others and of the utility content (a64 needs
two people), and painting its region removes it while the other questions survive (a painted face
leaves the count and the shirt; painted hands leave the count). v2 has train, validation and test
splits and per-person ground-truth boxes (`Split.regions`).

**Scenes v1** (``scenes="v1"``, the default config's; `synthetic_generator`, `synthetic_scenes`) are kept bit for bit as
they were: a person centred in a textured room, a column of objects on one side and, on the other,
possibly a card and a companion; train and test splits only. Its attributes: a4 long hair, a9 a
complete face, a10 a face turned away (a9 and a10 from one three-way draw), a12 a bare torso, a17
a darker skin tone, a64 an ID-like card, a65 a companion. Utility content (limb angles, objects)
is spatially separate from the private content there.

Images come with one VQA question from a fixed set (`QUESTIONS`, `QUESTIONS_V2`) and ten
annotator-style answers (most agree; a few confuse a neighbouring answer or give a synonym). Clips
animate the poses over T frames (the privacy attributes stay constant within a clip) and always
ask for the action.

`AnonymaxSynthetic` is the TFDS builder (array_record files, no TensorFlow needed to build or read;
v2's configs are named ``v2_...``) and `load_split` reads one of its splits into memory. The
vocabularies, `generate` and `generate_v2` live in the numpy-only modules and are re-exported here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from anonymax.data import scenes_v2
from anonymax.data.builder import ArrayRecordBuilder
from anonymax.data.questions_v2 import (
  ACTION_PROMPT_V2,
  ANSWER_VOCAB_V2,
  CHOICES_V2,
  QUESTION_TYPE_PROBS_V2,
  QUESTION_TYPES_V2,
  QUESTIONS_V2,
  VALIDATION_SEED_OFFSET,
  generate_v2,
  privacy_labels_v2,
)
from anonymax.data.records import Split, check_split, read_records, text
from anonymax.data.synthetic_generator import (
  ACTION_PROMPT,
  ACTIONS,
  ANNOTATOR_ERROR_RATE,
  ANSWER_VOCAB,
  CHOICES,
  COUNT_DIGITS,
  COUNT_PROMPT,
  COUNT_WORDS,
  MAX_WRONG_ANSWERS,
  MIN_IMAGE_SIZE,
  NUM_ANSWERS,
  OBJECT_COLORS,
  PRIVACY_ATTRIBUTES,
  QUESTION_TYPE_PROBS,
  QUESTION_TYPES,
  QUESTIONS,
  SHAPES,
  TEST_SEED_OFFSET,
  check_sizes,
  generate,
  privacy_labels,
)
from anonymax.types import Query

ACTIONS_V2 = scenes_v2.ACTIONS
SCENES = ("v1", "v2")
# The revision of what scenes v2's generator draws, part of every v2 config's name. A built TFDS
# dataset is found again by its name alone, so a changed generator must get a new revision or
# runs silently read data drawn by the old one (tests/data/test_synthetic.py pins the generator's
# output of this revision). v1 is frozen bit for bit and needs none.
V2_DATA_REVISION = 2

__all__ = [
  "ACTIONS",
  "ACTIONS_V2",
  "ACTION_PROMPT",
  "ACTION_PROMPT_V2",
  "ANNOTATOR_ERROR_RATE",
  "ANSWER_VOCAB",
  "ANSWER_VOCAB_V2",
  "CHOICES",
  "CHOICES_V2",
  "COUNT_DIGITS",
  "COUNT_PROMPT",
  "COUNT_WORDS",
  "MAX_WRONG_ANSWERS",
  "MIN_IMAGE_SIZE",
  "NUM_ANSWERS",
  "OBJECT_COLORS",
  "PRIVACY_ATTRIBUTES",
  "QUESTIONS",
  "QUESTIONS_V2",
  "QUESTION_TYPES",
  "QUESTION_TYPES_V2",
  "QUESTION_TYPE_PROBS",
  "QUESTION_TYPE_PROBS_V2",
  "SCENES",
  "SHAPES",
  "TEST_SEED_OFFSET",
  "V2_DATA_REVISION",
  "VALIDATION_SEED_OFFSET",
  "AnonymaxSynthetic",
  "SyntheticConfig",
  "SyntheticV2Config",
  "check_scenes",
  "generate",
  "generate_v2",
  "load_split",
  "make_config",
  "privacy_labels",
  "privacy_labels_v2",
]


def check_scenes(scenes) -> str:
  """`scenes` if it is one of `SCENES`; otherwise a ValueError naming the field."""
  if scenes not in SCENES:
    raise ValueError(f"scenes={scenes!r}: must be one of {SCENES}")
  return scenes


# --------------------------------------------------------------------------------------------------
# TFDS builder.


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  """A variant of the benchmark (scenes v1); every field is encoded in the config name."""

  image_size: int = 64
  clip_length: int = 0
  num_train: int = 4000
  num_test: int = 1000
  seed: int = 0


@dataclasses.dataclass
class SyntheticV2Config(SyntheticConfig):
  """A variant of scenes v2 (train, validation and test splits), named ``v2_...``."""

  num_validation: int = 500


def _check_seed(seed) -> None:
  if int(seed) != seed or seed < 0:
    raise ValueError(f"seed={seed!r}: must be a non-negative integer")


def _new_config(image_size, clip_length, num_train, num_test, seed) -> SyntheticConfig:
  check_sizes(image_size, clip_length, num_train=num_train, num_test=num_test)
  if num_train == 0 and num_test == 0:
    raise ValueError("num_train=0 and num_test=0: at least one split must hold examples")
  _check_seed(seed)
  kind = f"clips{clip_length}" if clip_length else "images"
  return SyntheticConfig(
    name=f"{kind}_s{image_size}_n{num_train}-{num_test}_seed{seed}",
    description=f"{kind}, {image_size}px, {num_train} train / {num_test} test, seed {seed}",
    image_size=int(image_size),
    clip_length=int(clip_length),
    num_train=int(num_train),
    num_test=int(num_test),
    seed=int(seed),
  )


def _new_config_v2(image_size, clip_length, num_train, num_validation, num_test, seed):
  sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
  check_sizes(image_size, clip_length, **sizes)
  if not any(sizes.values()):
    raise ValueError("num_train=num_validation=num_test=0: at least one split must hold examples")
  _check_seed(seed)
  kind = f"clips{clip_length}" if clip_length else "images"
  counts = f"{num_train}-{num_validation}-{num_test}"
  return SyntheticV2Config(
    name=f"v2_{kind}_s{image_size}_n{counts}_seed{seed}_r{V2_DATA_REVISION}",
    description=(
      f"scenes v2, {kind}, {image_size}px, {num_train} train / {num_validation} validation / "
      f"{num_test} test, seed {seed}"
    ),
    image_size=int(image_size),
    clip_length=int(clip_length),
    num_train=int(num_train),
    num_validation=int(num_validation),
    num_test=int(num_test),
    seed=int(seed),
  )


# The registered variants: the default images and clips datasets of v1 (the first is the builder's
# default config, as it always was) and of v2.
_DEFAULT_CONFIGS = (
  _new_config(64, 0, 4000, 1000, 0),
  _new_config(64, 8, 1000, 250, 0),
  _new_config_v2(64, 0, 4000, 500, 1000, 0),
  _new_config_v2(64, 8, 1000, 125, 250, 0),
)


def make_config(
  *,
  scenes: str = "v1",
  image_size: int = 64,
  clip_length: int = 0,
  num_train: int = 4000,
  num_validation: int | None = None,
  num_test: int = 1000,
  seed: int = 0,
) -> SyntheticConfig:
  """A validated config named e.g. ``images_s64_n4000-1000_seed0`` (v1, the builder's default)
  or ``v2_images_s64_n4000-500-1000_seed0_r2`` (v2, of generator revision `V2_DATA_REVISION`;
  num_validation defaults to 500).

  Returns the registered instance when the name is one of `AnonymaxSynthetic.BUILDER_CONFIGS`
  (TFDS refuses an equal but distinct config object of a registered name).

  Raises:
    ValueError: naming the field (v1 takes no num_validation).
  """
  if check_scenes(scenes) == "v1":
    if num_validation is not None:
      raise ValueError("num_validation: scenes v1 has no validation split")
    cfg = _new_config(image_size, clip_length, num_train, num_test, seed)
  else:
    num_validation = 500 if num_validation is None else num_validation
    cfg = _new_config_v2(image_size, clip_length, num_train, num_validation, num_test, seed)
  return next((c for c in _DEFAULT_CONFIGS if c.name == cfg.name), cfg)


class AnonymaxSynthetic(ArrayRecordBuilder):
  """TFDS builder of the synthetic benchmark (``anonymax_synthetic``), stored as array_record.

  Pixels are uint8 tensors stored as raw bytes (array_record compresses its chunks; zlib per
  example would triple the build time on noisy pixels) and strings are object tensors, so building
  and reading (`tfds.data_source`, `as_data_source`) never import TensorFlow. The train split of
  a config is ``generate(num_train, seed=seed)``; the test split uses ``seed + TEST_SEED_OFFSET``.
  v2 configs (`SyntheticV2Config`) use `generate_v2`, add a validation split (``seed +
  VALIDATION_SEED_OFFSET``) and the per-person boxes. Since generation is prefix stable, a split's
  content does not depend on the other splits' sizes, and a split of size 0 is left out.
  """

  BUILDER_CONFIGS = list(_DEFAULT_CONFIGS)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    s = cfg.image_size
    shape = (cfg.clip_length, s, s, 3) if cfg.clip_length else (s, s, 3)
    pixels = tfds.features.Tensor(
      shape=shape, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
    )
    features = {
      "clip" if cfg.clip_length else "image": pixels,
      "privacy": tfds.features.Tensor(shape=(len(PRIVACY_ATTRIBUTES),), dtype=np.float32),
      "action": tfds.features.Tensor(shape=(), dtype=np.int32),
      "question": tfds.features.Tensor(shape=(), dtype=np.object_),
      "answers": tfds.features.Tensor(shape=(NUM_ANSWERS,), dtype=np.object_),
      "question_type": tfds.features.Tensor(shape=(), dtype=np.object_),
    }
    if isinstance(cfg, SyntheticV2Config):
      box = tfds.features.Tensor(shape=(scenes_v2.MAX_PEOPLE, 4), dtype=np.float32)
      features["face_box"] = box
      features["person_box"] = box
      features["person_valid"] = tfds.features.Tensor(shape=(scenes_v2.MAX_PEOPLE,), dtype=np.bool_)
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(features),
      # Keep generation order: reading back gives exactly the generator's arrays.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the data is generated
    cfg = self.builder_config
    splits = {
      "train": (cfg.num_train, cfg.seed),
      "test": (cfg.num_test, cfg.seed + TEST_SEED_OFFSET),
    }
    if isinstance(cfg, SyntheticV2Config):
      splits["validation"] = (cfg.num_validation, cfg.seed + VALIDATION_SEED_OFFSET)
    # A split of size 0 is left out (a config built for one split only).
    return {name: self._generate_examples(n, seed) for name, (n, seed) in splits.items() if n}

  def _generate_examples(self, num_examples: int, seed: int):
    cfg = self.builder_config
    make = generate_v2 if isinstance(cfg, SyntheticV2Config) else generate
    data = make(num_examples, seed=seed, image_size=cfg.image_size, clip_length=cfg.clip_length)
    for i in range(num_examples):
      yield i, {k: v[i] for k, v in data.items()}


# --------------------------------------------------------------------------------------------------
# Loading.

_DEFAULT_SIZES = {"train": 4000, "validation": 500, "test": 1000}


def _split_sizes(split, scenes, num_examples, sizes: dict) -> dict:
  """The sizes of the splits to build: only the requested one with num_examples, else all."""
  base = split.split("[")[0]
  if scenes == "v1":
    if base == "validation":
      raise ValueError("split='validation': scenes v1 has only 'train' and 'test' splits")
    if sizes.pop("validation") is not None:
      raise ValueError("num_validation: scenes v1 has no validation split")
  if num_examples is not None:
    if any(v is not None for v in sizes.values()):
      raise ValueError(
        "num_examples: give either num_examples or the sizes of the splits "
        f"({', '.join('num_' + k for k in sizes)}), not both"
      )
    if isinstance(num_examples, bool) or int(num_examples) != num_examples or num_examples < 1:
      raise ValueError(f"num_examples={num_examples!r}: must be an integer >= 1")
    # Build the requested split alone (the others are left empty).
    return {k: num_examples if k == base else 0 for k in sizes}
  sizes = {k: _DEFAULT_SIZES[k] if v is None else v for k, v in sizes.items()}
  if sizes[base] == 0:
    raise ValueError(f"num_{base}=0: split {split!r} would be empty")
  return sizes


def load_split(
  split: str,
  *,
  data_dir: str | None = None,
  scenes: str = "v1",
  image_size: int = 64,
  clip_length: int = 0,
  num_examples: int | None = None,
  num_train: int | None = None,
  num_validation: int | None = None,
  num_test: int | None = None,
  seed: int = 0,
) -> Split:
  """One split of the synthetic benchmark in memory, building its TFDS config first if missing.

  Args:
    split: ``"train"``, ``"validation"`` (v2 only) or ``"test"``, optionally sliced as TFDS
      allows (``"train[:100]"``).
    data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    scenes: ``"v1"`` (the original scenes, bit for bit; the default config's) or ``"v2"``.
    image_size: side S in pixels (>= 32).
    clip_length: T frames per clip; 0 for still images.
    num_examples: the size of the requested split; only that split is built. Not with the
      split sizes below.
    num_train, num_validation, num_test: the sizes of the splits, built together (default 4000,
      500 and 1000; v1 has no validation split).
    seed: the data seed. A split's content depends only on (scenes, seed, image_size,
      clip_length) and its size, never on the other splits' sizes.

  Returns:
    A `Split`: visuals uint8 [N, S, S, 3] (or [N, T, S, S, 3]), privacy float32 [N, 7] in
    `PRIVACY_ATTRIBUTES` order, labels the (main person's) actions. Images ask their VQA question
    with its ten answers and the options of its type (`CHOICES`, `CHOICES_V2`); clips ask for the
    action among the actions. v2 also gives `Split.question_types` and `Split.regions` (the face
    and person boxes of up to three people, slot 0 the main person).
  """
  check_scenes(scenes)
  sizes = {"train": num_train, "validation": num_validation, "test": num_test}
  sizes = _split_sizes(check_split(split), scenes, num_examples, sizes)
  config = make_config(
    scenes=scenes,
    image_size=image_size,
    clip_length=clip_length,
    seed=seed,
    **{f"num_{k}": v for k, v in sizes.items()},
  )
  records = read_records(AnonymaxSynthetic.name, config, split, data_dir=data_dir)
  v2 = scenes == "v2"
  actions = ACTIONS_V2 if v2 else ACTIONS
  key = "clip" if clip_length else "image"
  shape = (clip_length, image_size, image_size, 3) if clip_length else (image_size,) * 2 + (3,)
  visuals = np.stack([r[key] for r in records]) if records else np.zeros((0, *shape), np.uint8)
  privacy = np.array([r["privacy"] for r in records], np.float32).reshape(
    -1, len(PRIVACY_ATTRIBUTES)
  )
  labels = np.array([r["action"] for r in records], np.int32).reshape(-1)
  queries = []
  for r in records:
    if clip_length:
      prompt = ACTION_PROMPT_V2 if v2 else ACTION_PROMPT
      queries.append(Query(prompt, (actions[int(r["action"])],), actions))
    else:
      answers = tuple(text(a) for a in r["answers"])
      choices = (CHOICES_V2 if v2 else CHOICES)[text(r["question_type"])]
      queries.append(Query(text(r["question"]), answers, choices))
  extra = {}
  if v2:
    people = scenes_v2.MAX_PEOPLE
    extra["question_types"] = tuple(text(r["question_type"]) for r in records)
    extra["regions"] = {
      "face": np.array([r["face_box"] for r in records], np.float32).reshape(-1, people, 4),
      "person": np.array([r["person_box"] for r in records], np.float32).reshape(-1, people, 4),
      "valid": np.array([r["person_valid"] for r in records], bool).reshape(-1, people),
    }
  return Split(
    visuals=visuals,
    privacy=privacy,
    queries=queries,
    labels=labels,
    attribute_names=PRIVACY_ATTRIBUTES,
    class_names=actions,
    **extra,
  )
