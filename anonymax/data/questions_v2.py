"""Scenes v2's examples: questions, ten annotator answers, privacy labels, regions (`generate_v2`).

Pure numpy (no TFDS): `scenes_v2` draws the scenes and `scenes_v2_render` paints them; this module
asks one question per scene (clips: always the action), draws ten annotator answers with v1's
noise model (`synthetic_generator.annotate`) and labels the seven privacy attributes. Person
questions are about the main person ("the person in front"): their action, what they hold, their
shirt's colour, their headwear; then the number of people and the floor objects. The person
questions and the count make up 70 % of the questions, and each sits where private content
is drawn: the face under the headwear and beside a phone or cup, bare shoulders above the shirt,
a badge on it, skin on the hands that hold, hands joined with a neighbour.
"""

from __future__ import annotations

import numpy as np

from anonymax.data import scenes_v2 as sv
from anonymax.data import scenes_v2_render
from anonymax.data.synthetic_generator import (
  COUNT_DIGITS,
  COUNT_WORDS,
  TEST_SEED_OFFSET,
  annotate,
  check_sizes,
  empty_examples,
  generate_in_chunks,
)

__all__ = [
  "ACTION_PROMPT_V2",
  "ANSWER_VOCAB_V2",
  "CHOICES_V2",
  "PROMPTS_V2",
  "QUESTIONS_V2",
  "QUESTION_TYPES_V2",
  "QUESTION_TYPE_PROBS_V2",
  "TEST_SEED_OFFSET",
  "VALIDATION_SEED_OFFSET",
  "generate_v2",
  "privacy_labels_v2",
]

QUESTION_TYPES_V2 = ("action", "held", "clothing", "headwear", "count", "object", "scene")
# How often each type is asked; action, held, clothing and headwear are about the main person
# (61 %), the count about all people (9 %), object and scene about the floor objects (30 %).
QUESTION_TYPE_PROBS_V2 = (0.22, 0.15, 0.12, 0.12, 0.09, 0.12, 0.18)
ACTION_PROMPT_V2 = "What is the person in front doing?"
PROMPTS_V2 = {
  "action": ACTION_PROMPT_V2,
  "held": "What is the person in front holding?",
  "clothing": "What color is the shirt of the person in front?",
  "headwear": "What is the person in front wearing on their head?",
  "count": "How many people are there?",
}
# The finite set of prompts: (question_type, prompt).
QUESTIONS_V2 = (
  *PROMPTS_V2.items(),
  *(("object", f"What color is the {s}?") for s in sv.SHAPES),
  *(("scene", f"Is there a {s}?") for s in sv.SHAPES),
)
# The options of each question type (multiple-choice `Query.choices`).
CHOICES_V2 = {
  "action": sv.ACTIONS,
  "held": sv.HELD,
  "clothing": sv.SHIRT_COLORS,
  "headwear": sv.HEADWEAR,
  "count": COUNT_WORDS,
  "object": sv.OBJECT_COLORS,
  "scene": ("yes", "no"),
}
ANSWER_VOCAB_V2 = tuple(dict.fromkeys(a for c in CHOICES_V2.values() for a in c)) + COUNT_DIGITS
VALIDATION_SEED_OFFSET = 2_000_029  # validation of seed s: generate_v2(..., seed=s + this)
_STREAM = 2  # v2's generator streams are seeded (_STREAM, seed, chunk), apart from v1's


def privacy_labels_v2(sc: dict[str, np.ndarray]) -> np.ndarray:
  """Multi-hot privacy vector of v2 scenes, float32 [n, 7] in `PRIVACY_ATTRIBUTES` order.

  a4: long hair on someone present; a9 / a10: someone shows a complete face / a profile; a12:
  someone has bare shoulders; a17: the main person's skin is one of the darker tones; a64: the
  main person holds hands with someone; a65: someone wears a badge.
  """
  valid = sc["valid"]
  return np.stack(
    [
      (sc["long_hair"] & valid).any(axis=1),
      ((sc["face"] == sv.FACE_COMPLETE) & valid).any(axis=1),
      ((sc["face"] == sv.FACE_PARTIAL) & valid).any(axis=1),
      (sc["bare"] & valid).any(axis=1),
      sc["skin_tone"][:, 0] >= sv.NUM_SKIN_TONES // 2,
      sc["clasp"] & (sc["count"] >= 2),
      (sc["badge"] & valid).any(axis=1),
    ],
    axis=1,
  ).astype(np.float32)


def _ask(rng: np.random.Generator, sc: dict[str, np.ndarray], clips: bool):
  """One question per scene: (question types, prompts, truths), lists of n strings.

  An object question in a scene without objects asks whether there is an object instead.
  """
  n = sc["count"].shape[0]
  kinds = np.zeros(n, np.int64) if clips else rng.choice(7, n, p=QUESTION_TYPE_PROBS_V2)
  pick = rng.random((n, 2))
  about = {
    "action": np.array(sv.ACTIONS)[sc["action"][:, 0]],
    "held": np.array(sv.HELD)[sc["held"]],
    "clothing": np.array(sv.SHIRT_COLORS)[sc["shirt"][:, 0]],
    "headwear": np.array(sv.HEADWEAR)[sc["headwear"][:, 0]],
    "count": np.array(COUNT_WORDS)[sc["count"] - 1],
  }
  types, prompts, truths = [], [], []
  for i in range(n):
    kind = QUESTION_TYPES_V2[kinds[i]]
    placed = np.flatnonzero(sc["object_on"][i])
    present = [int(sc["object_shape"][i, k]) for k in placed]
    if kind == "object" and not present:
      kind = "scene"
    if kind in PROMPTS_V2:
      prompt = PROMPTS_V2[kind]
      truth = about[kind][i]
    elif kind == "object":
      k = int(placed[int(pick[i, 0] * len(placed))])
      prompt = f"What color is the {sv.SHAPES[sc['object_shape'][i, k]]}?"
      truth = sv.OBJECT_COLORS[sc["object_color"][i, k]]
    else:
      # Half the time a shape that is there, half one that is not (when there is either).
      absent = [s for s in range(len(sv.SHAPES)) if s not in present]
      pool = present if (pick[i, 0] < 0.5 and present) or not absent else absent
      shape = pool[int(pick[i, 1] * len(pool))]
      prompt, truth = f"Is there a {sv.SHAPES[shape]}?", "yes" if shape in present else "no"
    types.append(kind)
    prompts.append(prompt)
    truths.append(str(truth))
  return types, prompts, truths


def _generate_chunk(seed: int, index: int, n: int, image_size: int, clip_length: int):
  """One fixed-size chunk of `n` examples, seeded by (v2's stream, seed, index)."""
  rng = np.random.default_rng([_STREAM, seed, index])
  sc = sv.sample_scenes(rng, n)
  types, prompts, truths = _ask(rng, sc, clips=clip_length > 0)
  answers = annotate(rng, types, truths, CHOICES_V2)
  if clip_length:
    # One frame per time step; every pose cycles once over the clip from its own phase.
    frames = {k: np.repeat(v, clip_length, axis=0) for k, v in sc.items()}
    step = 2 * np.pi * np.arange(clip_length, dtype=np.float32) / clip_length
    frames["phase"] = (frames["phase"] + np.tile(step, n)[:, None]).astype(np.float32)
    pixels, regions = scenes_v2_render.render(frames, image_size, rng)
    pixels = pixels.reshape(n, clip_length, image_size, image_size, 3)
    # A clip's boxes bound every frame's.
    for key in ("face", "person"):
      box = regions[key].reshape(n, clip_length, sv.MAX_PEOPLE, 4)
      regions[key] = np.concatenate([box[..., :2].min(axis=1), box[..., 2:].max(axis=1)], -1)
  else:
    pixels, regions = scenes_v2_render.render(sc, image_size, rng)
  return {
    "clip" if clip_length else "image": pixels,
    "privacy": privacy_labels_v2(sc),
    "action": sc["action"][:, 0].astype(np.int32),
    "question": np.array(prompts, dtype=object),
    "answers": answers,
    "question_type": np.array(types, dtype=object),
    "face_box": regions["face"],
    "person_box": regions["person"],
    "person_valid": sc["valid"].copy(),
  }


def _empty(image_size: int, clip_length: int) -> dict[str, np.ndarray]:
  """No examples: v1's fields, plus the boxes."""
  return empty_examples(image_size, clip_length) | {
    "face_box": np.zeros((0, sv.MAX_PEOPLE, 4), np.float32),
    "person_box": np.zeros((0, sv.MAX_PEOPLE, 4), np.float32),
    "person_valid": np.zeros((0, sv.MAX_PEOPLE), bool),
  }


def generate_v2(
  num_examples: int, *, seed: int, image_size: int = 64, clip_length: int = 0
) -> dict[str, np.ndarray]:
  """Generates scenes v2, deterministically from `seed`.

  Examples are drawn in fixed-size chunks seeded by (seed, chunk index), so the result does not
  depend on the machine, and `generate_v2(n)` is the first n examples of `generate_v2(m)`.

  Args:
    num_examples: N.
    seed: integer seed (the validation and test splits add `VALIDATION_SEED_OFFSET` and
      `TEST_SEED_OFFSET`).
    image_size: side S in pixels (>= 32).
    clip_length: T frames per clip (the poses move, the question is the action); 0 for images.

  Returns:
    ``"image"`` uint8 [N, S, S, 3] (or ``"clip"`` uint8 [N, T, S, S, 3]); ``"privacy"`` float32
    [N, 7] in `PRIVACY_ATTRIBUTES` order; ``"action"`` int32 [N] (the main person's, into
    ``scenes_v2.ACTIONS``); ``"question"``, ``"question_type"`` object [N]; ``"answers"`` object
    [N, 10]; ``"face_box"``, ``"person_box"`` float32 [N, 3, 4] (ymin, xmin, ymax, xmax in
    fractions of the image, slot 0 the main person, a clip's boxes bound all its frames) and
    ``"person_valid"`` bool [N, 3].
  """
  check_sizes(image_size, clip_length, num_examples=num_examples)
  return generate_in_chunks(_generate_chunk, _empty, num_examples, seed, image_size, clip_length)
