"""The synthetic benchmark's examples: the question and answer vocabulary and `generate`.

Pure numpy (no TFDS): `synthetic_scenes` draws and renders the scenes, this module asks one question
per scene, draws ten annotator answers and labels the privacy attributes. What the content means
(the attributes, the questions, the answers) is described in `anonymax.data.synthetic`, the
dataset's module, which re-exports every public name of this one.
"""

from __future__ import annotations

import numpy as np

from anonymax.data import synthetic_scenes as scenes
from anonymax.data.synthetic_scenes import ACTIONS, OBJECT_COLORS, SHAPES

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
  "annotate",
  "check_sizes",
  "generate",
  "privacy_labels",
]

PRIVACY_ATTRIBUTES = (
  "a4_gender",
  "a9_face_complete",
  "a10_face_partial",
  "a12_semi_nudity",
  "a17_color",
  "a64_rel_personal",
  "a65_rel_social",
)
QUESTION_TYPES = ("action", "count", "color", "exists")
ACTION_PROMPT = "What is the person doing?"
COUNT_PROMPT = "How many objects are there?"
# The finite set of prompts: (question_type, prompt).
QUESTIONS = (
  ("action", ACTION_PROMPT),
  ("count", COUNT_PROMPT),
  *(("color", f"What color is the {s}?") for s in SHAPES),
  *(("exists", f"Is there a {s}?") for s in SHAPES),
)
COUNT_WORDS = ("one", "two", "three")
COUNT_DIGITS = ("1", "2", "3")  # annotator synonyms of COUNT_WORDS (equal under VQA normalisation)
ANSWER_VOCAB = (*ACTIONS, *COUNT_WORDS, *OBJECT_COLORS, "yes", "no", *COUNT_DIGITS)
# The options of each question type (multiple-choice `Query.choices`).
CHOICES = {
  "action": ACTIONS,
  "count": COUNT_WORDS,
  "color": OBJECT_COLORS,
  "exists": ("yes", "no"),
}
NUM_ANSWERS = 10
MIN_IMAGE_SIZE = 32  # below this the face and the card are no longer drawable
# How often each question type is asked of an image (action first: it needs the pose).
QUESTION_TYPE_PROBS = (0.4, 0.2, 0.2, 0.2)
ANNOTATOR_ERROR_RATE = 0.1
MAX_WRONG_ANSWERS = 3  # the majority of the ten answers is always the truth
_CHUNK_FRAMES = (
  256  # scenes are drawn in fixed-size chunks, so generate(n) is a prefix of generate(m > n)
)
TEST_SEED_OFFSET = 1_000_003  # the test split of seed s is generate(..., seed=s + TEST_SEED_OFFSET)


def check_sizes(image_size: int, clip_length: int, **counts: int) -> None:
  """Checks integer sizes: image_size >= `MIN_IMAGE_SIZE`, clip_length >= 0, every count >= 0.

  Raises:
    ValueError: naming the first bad field.
  """
  if int(image_size) != image_size or image_size < MIN_IMAGE_SIZE:
    raise ValueError(f"image_size={image_size!r}: must be an integer >= {MIN_IMAGE_SIZE}")
  if int(clip_length) != clip_length or clip_length < 0:
    raise ValueError(f"clip_length={clip_length!r}: must be an integer >= 0 (0 = still images)")
  for field, value in counts.items():
    if int(value) != value or value < 0:
      raise ValueError(f"{field}={value!r}: must be an integer >= 0")


def privacy_labels(sc: dict[str, np.ndarray]) -> np.ndarray:
  """Multi-hot privacy vector of scenes, float32 [n, 7] in `PRIVACY_ATTRIBUTES` order."""
  return np.stack(
    [
      sc["long_hair"],
      sc["face"] == scenes.FACE_COMPLETE,
      sc["face"] == scenes.FACE_PARTIAL,
      sc["bare_torso"],
      sc["skin_tone"] >= scenes.NUM_SKIN_TONES // 2,
      sc["card"],
      sc["companion"],
    ],
    axis=1,
  ).astype(np.float32)


def _ask(rng: np.random.Generator, sc: dict[str, np.ndarray], clips: bool):
  """Draws one question per scene: (question_type [n], prompt [n], truth [n], confusions)."""
  n = sc["action"].shape[0]
  qtype = np.zeros(n, np.int64) if clips else rng.choice(4, n, p=QUESTION_TYPE_PROBS)
  pick = rng.random((n, 2))  # which shape a color/exists question is about
  prompts, truths, types = [], [], []
  for i in range(n):
    kind = QUESTION_TYPES[qtype[i]]
    present = sc["object_shape"][i][sc["object_slot"][i]]
    if kind == "action":
      prompt, truth = ACTION_PROMPT, ACTIONS[sc["action"][i]]
    elif kind == "count":
      prompt, truth = COUNT_PROMPT, COUNT_WORDS[sc["num_objects"][i] - 1]
    elif kind == "color":
      k = int(pick[i, 0] * len(present))
      slot = int(np.flatnonzero(sc["object_slot"][i])[k])
      prompt = f"What color is the {SHAPES[sc['object_shape'][i, slot]]}?"
      truth = OBJECT_COLORS[sc["object_color"][i, slot]]
    else:
      # Half the time ask about a shape that is there, half about one that is not (if any).
      absent = [s for s in range(len(SHAPES)) if s not in present]
      pool = present if pick[i, 0] < 0.5 or not absent else absent
      shape = int(pool[int(pick[i, 1] * len(pool))])
      prompt, truth = f"Is there a {SHAPES[shape]}?", "yes" if shape in present else "no"
    prompts.append(prompt)
    truths.append(truth)
    types.append(kind)
  return types, prompts, truths


def annotate(
  rng: np.random.Generator, types: list[str], truths: list[str], choices=None
) -> np.ndarray:
  """Ten annotator answers per question: object [n, 10].

  Each annotator errs with probability `ANNOTATOR_ERROR_RATE` (at most `MAX_WRONG_ANSWERS` per
  question); an error is another answer of the same type (among ``choices[type]``, default
  `CHOICES`), or, for counts, half the time the digit synonym of the truth ("2" for "two").
  """
  choices = CHOICES if choices is None else choices
  n = len(truths)
  err = rng.random((n, NUM_ANSWERS)) < ANNOTATOR_ERROR_RATE
  err &= np.cumsum(err, axis=1) <= MAX_WRONG_ANSWERS
  which = rng.random((n, NUM_ANSWERS))
  synonym = rng.random((n, NUM_ANSWERS)) < 0.5
  out = np.empty((n, NUM_ANSWERS), dtype=object)
  for i in range(n):
    others = [a for a in choices[types[i]] if a != truths[i]]
    for j in range(NUM_ANSWERS):
      if not err[i, j]:
        out[i, j] = truths[i]
      elif types[i] == "count" and synonym[i, j]:
        out[i, j] = COUNT_DIGITS[COUNT_WORDS.index(truths[i])]
      else:
        out[i, j] = others[int(which[i, j] * len(others))]
  return out


def _generate_chunk(seed: int, index: int, n: int, image_size: int, clip_length: int):
  """One fixed-size chunk of `n` examples, seeded by (seed, index)."""
  rng = np.random.default_rng([seed, index])
  sc = scenes.sample_scenes(rng, n)
  types, prompts, truths = _ask(rng, sc, clips=clip_length > 0)
  answers = annotate(rng, types, truths)
  if clip_length:
    # One frame per time step; the pose cycles once over the clip from a random phase.
    frames = {k: np.repeat(v, clip_length, axis=0) for k, v in sc.items()}
    step = 2 * np.pi * np.arange(clip_length, dtype=np.float32) / clip_length
    frames["phase"] = (sc["phase"][:, None] + step[None, :]).reshape(-1)
    pixels = scenes.render(frames, image_size, rng)
    pixels = pixels.reshape(n, clip_length, image_size, image_size, 3)
  else:
    pixels = scenes.render(sc, image_size, rng)
  return {
    "clip" if clip_length else "image": pixels,
    "privacy": privacy_labels(sc),
    "action": sc["action"].astype(np.int32),
    "question": np.array(prompts, dtype=object),
    "answers": answers,
    "question_type": np.array(types, dtype=object),
  }


def generate(
  num_examples: int, *, seed: int, image_size: int = 64, clip_length: int = 0
) -> dict[str, np.ndarray]:
  """Generates the synthetic benchmark, deterministically from `seed`.

  Examples are drawn in fixed-size chunks seeded by (seed, chunk index), so the result does not
  depend on the machine, and `generate(n)` is the first n examples of `generate(m)` for m > n.

  Args:
    num_examples: N.
    seed: integer seed.
    image_size: side S in pixels (>= 32).
    clip_length: T frames per clip; 0 for still images.

  Returns:
    ``"image"`` uint8 [N, S, S, 3] (clip_length == 0) or ``"clip"`` uint8 [N, T, S, S, 3];
    ``"privacy"`` float32 [N, 7] multi-hot in `PRIVACY_ATTRIBUTES` order; ``"action"`` int32 [N]
    (index into `ACTIONS`); ``"question"`` object [N]; ``"answers"`` object [N, 10];
    ``"question_type"`` object [N] (one of `QUESTION_TYPES`).
  """
  check_sizes(image_size, clip_length, num_examples=num_examples)
  return generate_in_chunks(
    _generate_chunk, empty_examples, num_examples, seed, image_size, clip_length
  )


def empty_examples(image_size: int, clip_length: int) -> dict[str, np.ndarray]:
  """No examples, with the fields and per-example shapes `generate` returns."""
  shape = (0, clip_length) if clip_length else (0,)
  return {
    "clip" if clip_length else "image": np.zeros((*shape, image_size, image_size, 3), np.uint8),
    "privacy": np.zeros((0, len(PRIVACY_ATTRIBUTES)), np.float32),
    "action": np.zeros(0, np.int32),
    "question": np.zeros(0, object),
    "answers": np.zeros((0, NUM_ANSWERS), object),
    "question_type": np.zeros(0, object),
  }


def generate_in_chunks(generate_chunk, empty, num_examples, seed, image_size, clip_length):
  """The first `num_examples` examples of the stream ``generate_chunk(seed, index, n, S, T)``,
  chunk by chunk (each chunk has its own generator, so a prefix never depends on the total);
  ``empty(S, T)`` when there are none. Shared by scenes v1 (`generate`) and v2.

  Raises:
    ValueError: naming `seed` unless it is a non-negative integer.
  """
  if int(seed) != seed or seed < 0:
    raise ValueError(f"seed={seed!r}: must be a non-negative integer")
  chunk = max(1, _CHUNK_FRAMES // max(clip_length, 1))
  parts = []
  for index in range(-(-num_examples // chunk)):
    part = generate_chunk(int(seed), index, chunk, int(image_size), int(clip_length))
    parts.append({k: v[: num_examples - index * chunk] for k, v in part.items()})
  if not parts:
    return empty(int(image_size), int(clip_length))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
