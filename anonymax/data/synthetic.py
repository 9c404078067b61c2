"""The synthetic benchmark: procedural scenes with utility content and VISPR-named privacy attributes.

Each example is a 64×64 (configurable) scene drawn by `synthetic_scenes`: a person whose pose is
one of `ACTIONS`, up to three objects (`SHAPES` × `OBJECT_COLORS`), and privacy content named after
the seven VISPR attributes used by prior work. The mapping from VISPR names to scene content:

  =================  ============================================================================
  a4_gender          long hair falling beside the head (the gender cue); absent: short hair.
  a9_face_complete   the face is fully visible (two eyes and a mouth).
  a10_face_partial   the face is turned away: one eye, half a mouth, hair over the other half.
                     (a9 and a10 come from one three-way draw: hidden / complete / partial, so
                     they never occur together; a hidden face shows the back of the head.)
  a12_semi_nudity    a bare torso (skin-coloured exposed area) instead of a shirt.
  a17_color          a darker skin tone (three darker vs three lighter tones), visible on the
                     head, the neck, a bare torso and the companion.
  a64_rel_personal   a personal document: an ID-like card with a photo and text lines.
  a65_rel_social     a companion: a second, smaller person beside the main one.
  =================  ============================================================================

Every attribute is drawn independently of the action, of the objects and of the other attributes,
so utility is not predictable from privacy. Utility content (limb angles, objects) is spatially
separate from the face, the card and the companion, so an anonymizer that removes every attribute
and keeps the task exists; the limbs belong to the person, so blurring or blackening the person
removes the action.

Images come with one VQA question from a fixed set (`QUESTIONS`) and ten annotator-style answers
(most agree; a few confuse a neighbouring answer or give a synonym). Clips animate the pose over T
frames (the privacy attributes stay constant within a clip) and always ask for the action.

`AnonymaxSynthetic` is the TFDS builder (array_record files, no TensorFlow needed to build or read)
and `load_split` reads one of its splits into memory. The vocabulary and `generate` live in
`synthetic_generator` (numpy only) and are re-exported here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from anonymax.data.builder import ArrayRecordBuilder
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

__all__ = [
  "ACTIONS",
  "ACTION_PROMPT",
  "ANNOTATOR_ERROR_RATE",
  "ANSWER_VOCAB",
  "CHOICES",
  "COUNT_DIGITS",
  "COUNT_PROMPT",
  "COUNT_WORDS",
  "MAX_WRONG_ANSWERS",
  "MIN_IMAGE_SIZE",
  "NUM_ANSWERS",
  "OBJECT_COLORS",
  "PRIVACY_ATTRIBUTES",
  "QUESTIONS",
  "QUESTION_TYPES",
  "QUESTION_TYPE_PROBS",
  "SHAPES",
  "TEST_SEED_OFFSET",
  "AnonymaxSynthetic",
  "SyntheticConfig",
  "generate",
  "load_split",
  "make_config",
  "privacy_labels",
]


# --------------------------------------------------------------------------------------------------
# TFDS builder.


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  """A variant of the benchmark; every field is encoded in the config name."""

  image_size: int = 64
  clip_length: int = 0
  num_train: int = 4000
  num_test: int = 1000
  seed: int = 0


def _new_config(image_size, clip_length, num_train, num_test, seed) -> SyntheticConfig:
  check_sizes(image_size, clip_length, num_train=num_train, num_test=num_test)
  if num_train == 0 and num_test == 0:
    raise ValueError("num_train=0 and num_test=0: at least one split must hold examples")
  if int(seed) != seed or seed < 0:
    raise ValueError(f"seed={seed!r}: must be a non-negative integer")
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


# The registered variants: the default images and clips datasets.
_DEFAULT_CONFIGS = (
  _new_config(64, 0, 4000, 1000, 0),
  _new_config(64, 8, 1000, 250, 0),
)


def make_config(
  *,
  image_size: int = 64,
  clip_length: int = 0,
  num_train: int = 4000,
  num_test: int = 1000,
  seed: int = 0,
) -> SyntheticConfig:
  """A validated `SyntheticConfig` named e.g. ``images_s64_n4000-1000_seed0`` or ``clips8_s64_...``.

  Returns the registered instance when the name is one of `AnonymaxSynthetic.BUILDER_CONFIGS`
  (TFDS refuses an equal but distinct config object of a registered name).
  """
  cfg = _new_config(image_size, clip_length, num_train, num_test, seed)
  return next((c for c in _DEFAULT_CONFIGS if c.name == cfg.name), cfg)


class AnonymaxSynthetic(ArrayRecordBuilder):
  """TFDS builder of the synthetic benchmark (``anonymax_synthetic``), stored as array_record.

  Pixels are uint8 tensors stored as raw bytes (array_record compresses its chunks; zlib per
  example would triple the build time on noisy pixels) and strings are object tensors, so building
  and reading (`tfds.data_source`, `as_data_source`) never import TensorFlow. The train split of
  a config is ``generate(num_train, seed=seed)``; the test split uses ``seed + TEST_SEED_OFFSET``.
  Since `generate` is prefix stable, a split's content does not depend on the other split's size,
  and a config with num_test=0 (or num_train=0) holds only the other split.
  """

  BUILDER_CONFIGS = list(_DEFAULT_CONFIGS)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    s = cfg.image_size
    shape = (cfg.clip_length, s, s, 3) if cfg.clip_length else (s, s, 3)
    pixels = tfds.features.Tensor(
      shape=shape, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
    )
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "clip" if cfg.clip_length else "image": pixels,
          "privacy": tfds.features.Tensor(shape=(len(PRIVACY_ATTRIBUTES),), dtype=np.float32),
          "action": tfds.features.Tensor(shape=(), dtype=np.int32),
          "question": tfds.features.Tensor(shape=(), dtype=np.object_),
          "answers": tfds.features.Tensor(shape=(NUM_ANSWERS,), dtype=np.object_),
          "question_type": tfds.features.Tensor(shape=(), dtype=np.object_),
        }
      ),
      # Keep generation order: reading back gives exactly `generate`'s arrays.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the data is generated
    cfg = self.builder_config
    # A split of size 0 is left out (a config built for one split only).
    splits = {
      "train": (cfg.num_train, cfg.seed),
      "test": (cfg.num_test, cfg.seed + TEST_SEED_OFFSET),
    }
    return {name: self._generate_examples(n, seed) for name, (n, seed) in splits.items() if n}

  def _generate_examples(self, num_examples: int, seed: int):
    cfg = self.builder_config
    data = generate(num_examples, seed=seed, image_size=cfg.image_size, clip_length=cfg.clip_length)
    for i in range(num_examples):
      yield i, {k: v[i] for k, v in data.items()}


# --------------------------------------------------------------------------------------------------
# Loading.


def load_split(
  split: str,
  *,
  data_dir: str | None = None,
  image_size: int = 64,
  clip_length: int = 0,
  num_examples: int | None = None,
  num_train: int | None = None,
  num_test: int | None = None,
  seed: int = 0,
) -> Split:
  """One split of the synthetic benchmark in memory, building its TFDS config first if missing.

  Args:
    split: ``"train"`` or ``"test"``, optionally sliced as TFDS allows (``"train[:100]"``).
    data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    image_size: side S in pixels (>= 32).
    clip_length: T frames per clip; 0 for still images.
    num_examples: the size of the requested split; only that split is built. Not with
      num_train/num_test.
    num_train, num_test: the sizes of both splits, built together (default 4000 and 1000).
    seed: the data seed. A split's content depends only on (seed, image_size, clip_length) and its
      size, never on the other split's size.

  Returns:
    A `Split`: visuals uint8 [N, S, S, 3] (or [N, T, S, S, 3]), privacy float32 [N, 7] in
    `PRIVACY_ATTRIBUTES` order, labels the actions (into `ACTIONS`). Images ask their VQA question
    with its ten answers and the options of its type (`CHOICES`); clips ask `ACTION_PROMPT`
    among `ACTIONS`.
  """
  base = check_split(split).split("[")[0]
  if num_examples is not None:
    if num_train is not None or num_test is not None:
      raise ValueError("num_examples: give either num_examples or num_train/num_test, not both")
    if int(num_examples) != num_examples or num_examples < 1:
      raise ValueError(f"num_examples={num_examples!r}: must be an integer >= 1")
    # Build the requested split alone (the other one is left empty).
    num_train, num_test = (num_examples, 0) if base == "train" else (0, num_examples)
  else:
    num_train = 4000 if num_train is None else num_train
    num_test = 1000 if num_test is None else num_test
  if (num_train if base == "train" else num_test) == 0:
    raise ValueError(f"num_{base}=0: split {split!r} would be empty")
  config = make_config(
    image_size=image_size,
    clip_length=clip_length,
    num_train=num_train,
    num_test=num_test,
    seed=seed,
  )
  records = read_records(AnonymaxSynthetic.name, config, split, data_dir=data_dir)
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
      queries.append(Query(ACTION_PROMPT, (ACTIONS[int(r["action"])],), ACTIONS))
    else:
      answers = tuple(text(a) for a in r["answers"])
      queries.append(Query(text(r["question"]), answers, CHOICES[text(r["question_type"])]))
  return Split(
    visuals=visuals,
    privacy=privacy,
    queries=queries,
    labels=labels,
    attribute_names=PRIVACY_ATTRIBUTES,
    class_names=ACTIONS,
  )
