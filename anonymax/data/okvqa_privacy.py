"""The privacy annotation of OK-VQA's test images: VISPR attributes per COCO image.

OK-VQA has no privacy labels. "When Visual Privacy Protection Meets Multimodal Large Language
Models" (Hui et al., IJCV 2026) annotates the OK-VQA test images of its two people-centred
categories (Sports and Recreation, People and Everyday Life) with the privacy attributes of prior
work, the VISPR ones the judges learn, and reports the judges' cMAP on them (its OK-VQA privacy
column; the VISPR column is VISPR's test split). The paper does not describe the file it
releases, so this module defines the one it reads, one JSON file (default name
`ANNOTATION_FILE`, in the OK-VQA manual dir)::

  {
    "attributes": ["a4_gender", "a9_face_complete", "a10_face_partial", "a12_semi_nudity",
                   "a17_color", "a64_rel_personal", "a65_rel_social"],
    "images": {"42": ["a4_gender", "a9_face_complete"], "73": [], "97": ["a0_safe"]}
  }

* ``attributes``: the VISPR attribute ids (`vispr.ALL_ATTRIBUTES`) the annotators looked for,
  each once. An attribute not listed here was not annotated, which is not the same as absent: a
  run whose attribute set needs it is refused.
* ``images``: COCO image id (the integer as a JSON key, e.g. ``"42"``, not the file name) → the
  listed attributes present in that image; ``[]`` or ``["a0_safe"]`` (VISPR's "nothing private")
  for none. An image asked several questions is labelled once.

The release's own layout may differ (a CSV, COCO file names as keys, PA-HMDB51's five names): a
few lines that rewrite it into this form are all a user needs, and every malformed entry is an
error naming this file. Labels are per image, for every question on it; `okvqa.load_split` reads
them with ``privacy_annotations=`` (and ``unique_images=True`` to judge each image once).
"""

from __future__ import annotations

import json
import os

import numpy as np

from anonymax.data import vispr

__all__ = ["ANNOTATION_FILE", "read_annotations"]

ANNOTATION_FILE = "okvqa_privacy_attributes.json"


def _fail(path, why: str):
  raise ValueError(
    f"{path}: {why} (the OK-VQA privacy annotation; format: anonymax.data.okvqa_privacy)"
  )


def _load_json(path: str) -> dict:
  if not os.path.isfile(path):
    raise ValueError(
      f"{path}: OK-VQA privacy annotation not found; put the paper's annotation of the OK-VQA test "
      "images there, as the JSON of anonymax.data.okvqa_privacy (or judge on VISPR only: variant "
      "privacy_test=vispr of configs/okvqa.py)"
    )
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError included
    _fail(path, f"not a readable JSON file ({e})")
  if not isinstance(data, dict):
    _fail(path, "expected an object with 'attributes' and 'images'")
  return data


def read_annotations(path: str | os.PathLike, attributes: str = "paper") -> dict[int, np.ndarray]:
  """COCO image id → its privacy labels in the order of ``vispr.ATTRIBUTE_SETS[attributes]``.

  y_j = 1 iff the image's list holds one of attribute j's VISPR ids (`vispr.multi_hot`; for
  ``"pa_hmdb51"`` the union of its ids).

  Args:
    path: the annotation file (see the module docstring).
    attributes: the VISPR attribute set of the run ("paper", "all" or "pa_hmdb51").

  Returns:
    {image_id: float32 [P]}.

  Raises:
    ValueError: one line naming the file, when it is missing or malformed, or when it did not
      annotate an attribute the set needs.
  """
  path = os.fspath(path)
  data = _load_json(path)
  listed = data.get("attributes")
  known = set(vispr.ALL_ATTRIBUTES)
  if not isinstance(listed, list) or not listed or not all(isinstance(a, str) for a in listed):
    _fail(path, "'attributes' must be a non-empty list of VISPR attribute ids")
  unknown = [a for a in listed if a not in known]
  if unknown:
    _fail(path, f"'attributes' lists {unknown[0]!r}, not a VISPR attribute id")
  if len(set(listed)) != len(listed):
    _fail(path, "'attributes' lists an attribute twice")
  needed = [i for ids in vispr.source_ids(attributes) for i in ids if i not in listed]
  if needed:
    _fail(
      path,
      f"attributes={attributes!r} needs {needed[0]!r}, which it does not annotate "
      f"(it annotates {', '.join(listed)})",
    )
  images = data.get("images")
  if not isinstance(images, dict):
    _fail(path, "'images' must be an object mapping COCO image ids to attribute lists")
  allowed = set(listed) | {vispr.SAFE_LABEL}
  out = {}
  for key, labels in images.items():
    if not key.isdigit():
      _fail(path, f'image key {key!r} is not a COCO image id (digits, e.g. "42")')
    if not isinstance(labels, list) or not all(isinstance(a, str) for a in labels):
      _fail(path, f"image {key}: expected a list of attribute ids, got {labels!r}")
    stray = [a for a in labels if a not in allowed]
    if stray:
      _fail(path, f"image {key}: {stray[0]!r} is not one of its 'attributes' (or a0_safe)")
    if int(key) in out:
      _fail(path, f"image {int(key)} is listed twice")
    out[int(key)] = vispr.multi_hot(labels, attributes)
  return out
