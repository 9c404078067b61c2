"""Tests of scenes v2: boxes bound what is drawn, layouts vary, labels and answers follow the scene."""

from __future__ import annotations

import collections
import hashlib

import numpy as np
import pytest

from anonymax.data import pipeline, questions_v2, synthetic, synthetic_generator
from anonymax.data import scenes_v2 as sv
from anonymax.data import scenes_v2_render as rv
from anonymax.data.records import Split
from anonymax.types import Query

SIZE = 64
ATTR = {name: i for i, name in enumerate(synthetic.PRIVACY_ATTRIBUTES)}


def _scenes(n=24, seed=0):
  return sv.sample_scenes(np.random.default_rng(seed), n)


def _render(sc, size=SIZE, **kwargs):
  """Pixels (int16) and regions; the noise is the same for every call."""
  img, regions = rv.render(sc, size, np.random.default_rng(123), **kwargs)
  return img.astype(np.int16), regions


def _inside(box, size=SIZE, margin=1.0):
  """Pixels whose centres lie in a (ymin, xmin, ymax, xmax) box widened by `margin` pixels."""
  c = (np.arange(size) + 0.5) / size
  m = margin / size
  rows = (c >= box[0] - m) & (c <= box[2] + m)
  cols = (c >= box[1] - m) & (c <= box[3] + m)
  return rows[:, None] & cols[None, :]


def _changed(a, b):
  return (np.abs(a - b) > 0).any(axis=-1)


def _only(sc, k):
  """A `people` mask that draws only person k of every scene."""
  mask = np.zeros(sc["valid"].shape, bool)
  mask[:, k] = True
  return mask


@pytest.fixture(scope="module")
def scenes_and_render():
  sc = _scenes()
  return sc, *_render(sc)


def test_person_boxes_bound_every_pixel_the_person_changes(scenes_and_render):
  sc, full, regions = scenes_and_render
  valid = regions["valid"]
  np.testing.assert_array_equal(valid, sc["valid"])
  assert 1 <= valid.sum(axis=1).min() and valid.sum(axis=1).max() == 3
  boxes = regions["person"]
  assert (boxes >= 0).all() and (boxes <= 1).all()
  assert (boxes[valid][:, 2] > boxes[valid][:, 0]).all()
  assert (boxes[~valid] == 0).all() and (regions["face"][~valid] == 0).all()
  for k in range(sv.MAX_PEOPLE):
    without, _ = _render(sc, people=~_only(sc, k))
    changed = _changed(full, without)
    for i in np.flatnonzero(valid[:, k]):
      assert changed[i].sum() >= 20, f"person {k} of scene {i} is (nearly) invisible"
      outside = changed[i] & ~_inside(boxes[i, k])
      assert not outside.any(), f"scene {i}, person {k}: {np.argwhere(outside)[:4]}"
    assert not changed[~valid[:, k]].any()  # an absent person changes nothing


def test_face_box_holds_the_head_and_lies_in_the_person_box(scenes_and_render):
  sc, _, regions = scenes_and_render
  no_head = tuple(p for p in rv.PARTS if p not in rv.FACE_PARTS)
  for k in range(sv.MAX_PEOPLE):
    alone, _ = _render(sc, people=_only(sc, k))
    headless, _ = _render(sc, people=_only(sc, k), parts=no_head)
    head = _changed(alone, headless)
    for i in np.flatnonzero(sc["valid"][:, k]):
      face, person = regions["face"][i, k], regions["person"][i, k]
      assert head[i].sum() >= 4
      assert not (head[i] & ~_inside(face)).any(), f"scene {i}, person {k}"
      assert (face[:2] >= person[:2]).all() and (face[2:] <= person[2:]).all()
      # The face box is the head: far smaller than the person.
      assert (face[2] - face[0]) < 0.35 * (person[2] - person[0])


def test_objects_stay_clear_of_the_main_person(scenes_and_render):
  sc, _, regions = scenes_and_render
  main = regions["person"][:, 0]
  x, on = sc["object_x"], sc["object_on"]
  assert on.any(axis=1).mean() > 0.6
  half = 1.05 * sv.OBJECT_R  # the widest object (the box with its rim)
  clear = (x + half < main[:, 1, None]) | (x - half > main[:, 3, None])
  assert clear[on].all()


def test_no_fixed_mask_covers_the_private_regions():
  d = questions_v2.generate_v2(300, seed=4, image_size=32)
  face, valid = d["face_box"], d["person_valid"]
  centre_x = 0.5 * (face[..., 1] + face[..., 3])
  centre_y = 0.5 * (face[..., 0] + face[..., 2])
  assert centre_x[:, 0].std() >= 0.1 and centre_x[valid].std() >= 0.1
  assert centre_y[:, 0].std() >= 0.04  # the heads' heights vary too (scale, floor line, pose)
  union = np.zeros((32, 32), bool)
  for box in face[valid]:
    union |= _inside(box, 32, margin=0)
  assert union.mean() > 0.4
  # The main person's face box overlaps the average one in less than half the images.
  mean = face[:, 0].mean(axis=0)
  iy = np.minimum(face[:, 0, 2], mean[2]) - np.maximum(face[:, 0, 0], mean[0])
  ix = np.minimum(face[:, 0, 3], mean[3]) - np.maximum(face[:, 0, 1], mean[1])
  assert ((iy > 0) & (ix > 0)).mean() < 0.5
  counts = np.bincount(valid.sum(axis=1), minlength=4)[1:]
  assert (counts > 60).all()  # one, two and three people, about equally often


def test_the_best_constant_mask_hides_few_faces_for_the_area_it_paints():
  """What makes the benchmark honest: an input-dependent anonymizer can hide every face by
  painting each image's face boxes (a = their mean area); the best input-independent mask of the
  same area (the pixels most often inside a face) hides a small share of the face pixels, and
  hiding 90% of them takes a mask several times that area, painted over every image."""
  d = questions_v2.generate_v2(300, seed=5, image_size=32)
  face, valid = d["face_box"], d["person_valid"]
  masks = np.zeros((len(face), 32, 32), bool)
  for i, k in zip(*np.nonzero(valid)):
    masks[i] |= _inside(face[i, k], 32, margin=0)
  area = masks.mean()  # the per-image face area an input-dependent mask paints
  heat = np.sort(masks.mean(axis=0).ravel())[::-1]  # how often each pixel is in a face
  covered = np.cumsum(heat) / heat.sum()  # the best constant mask of 1, 2, ... pixels
  assert 0.01 < area < 0.1
  assert covered[round(area * heat.size) - 1] < 0.25  # measured: 0.18
  assert (np.searchsorted(covered, 0.9) + 1) / heat.size > 5 * area  # measured: 8.6 a


def test_labels_follow_the_scene():
  sc = _scenes(600, seed=2)
  labels = questions_v2.privacy_labels_v2(sc)
  assert not labels[sc["count"] == 1, ATTR["a64_rel_personal"]].any()
  assert (sc["count"][labels[:, ATTR["a64_rel_personal"]] == 1] >= 2).all()
  # a17 is the main person's tone, and only the main person can have a darker one.
  np.testing.assert_array_equal(labels[:, ATTR["a17_color"]], sc["skin_tone"][:, 0] >= 3)
  assert (sc["skin_tone"][:, 1:] < 3).all()
  # Every bit is on about half the time (a64 half the time there are two people or more).
  rates = np.delete(labels.mean(axis=0), ATTR["a64_rel_personal"])
  assert ((rates > 0.35) & (rates < 0.65)).all(), rates
  multi = sc["count"] >= 2
  assert 0.4 < labels[multi, ATTR["a64_rel_personal"]].mean() < 0.6
  # No bit is predictable from another one or from the main person's action and clothing.
  action = np.eye(len(sv.ACTIONS))[sc["action"][:, 0]]
  held = np.eye(len(sv.HELD))[sc["held"]]
  corr = np.corrcoef(np.concatenate([labels, action, held], axis=1).T)
  np.fill_diagonal(corr, 0)
  assert np.abs(corr[:7]).max() < 0.2, np.abs(corr[:7]).max()


@pytest.mark.parametrize(
  "attribute, part",
  [
    ("a4_gender", "hair"),
    ("a9_face_complete", "face"),
    ("a10_face_partial", "face"),
    ("a12_semi_nudity", "shoulders"),
    ("a65_rel_social", "badge"),
  ],
)
def test_each_attribute_is_drawn_where_its_label_is_on(scenes_and_render, attribute, part):
  """The part that shows an attribute changes pixels exactly in the images labelled with it."""
  sc, full, _ = scenes_and_render
  label = questions_v2.privacy_labels_v2(sc)[:, ATTR[attribute]] > 0
  state = {"a9_face_complete": sv.FACE_COMPLETE, "a10_face_partial": sv.FACE_PARTIAL}
  people = sc["valid"].copy()
  if attribute in state:  # draw only the people who show this face state
    people &= sc["face"] == state[attribute]
  else:
    assert label.any() and not label.all()
  drawn, _ = _render(sc, people=people)
  without, _ = _render(sc, people=people, parts=tuple(p for p in rv.PARTS if p != part))
  changed = _changed(drawn, without).sum(axis=(1, 2))
  np.testing.assert_array_equal(changed >= 2, label)


def test_joined_hands_meet_between_the_two_people():
  sc = _scenes(200, seed=3)
  on = np.flatnonzero(sc["clasp"])
  assert len(on) > 30
  sk = sv.skeleton(sc)
  partner = sc["partner"][on]
  assert (partner >= 1).all() and sc["valid"][on, partner].all()
  side = (sc["clasp_side"][on] > 0).astype(int)
  main_hand = sk["hand"][on, 0, side]
  other_hand = sk["hand"][on, partner, 1 - side]
  gap = np.linalg.norm(main_hand - other_hand, axis=-1)
  assert (gap < sv.HAND_R * sc["height"][on, partner]).all(), gap.max()
  lo = np.minimum(sc["cx"][on, 0], sc["cx"][on, partner])
  hi = np.maximum(sc["cx"][on, 0], sc["cx"][on, partner])
  assert ((main_hand[:, 0] > lo) & (main_hand[:, 0] < hi)).all()
  # Nobody else holds hands: the clasp is a64's only drawing.
  assert (sc["partner"][~sc["clasp"]] == -1).all()


def test_bare_shoulders_show_skin_above_a_visible_shirt():
  n, size = 16, 128
  sc = _scenes(n, seed=5)
  # One person, nothing in front of the torso, neutral light.
  sc.update(count=np.ones(n, np.int32), clasp=np.zeros(n, bool), held=np.full(n, sv.NOTHING))
  sc["valid"] = np.broadcast_to(np.arange(3) < 1, (n, 3)).copy()
  sc["badge"][:] = False
  sc.update(gain=np.ones(n, np.float32), light_slope=np.zeros(n, np.float32))
  sk = sv.skeleton(sc)
  h, top = sc["height"][:, 0], sk["top"][:, 0]
  col = (sc["cx"][:, 0] * size).astype(int)
  chest_row = ((top + 0.305 * h) * size).astype(int)
  belly_row = ((top + 0.45 * h) * size).astype(int)
  skin = rv._SKIN[sc["skin_tone"][:, 0]]
  shirt = rv._SHIRTS[sc["shirt"][:, 0]]
  for bare in (False, True):
    sc["bare"][:, 0] = bare
    img, _ = _render(sc, size)
    chest, belly = img[np.arange(n), chest_row, col], img[np.arange(n), belly_row, col]
    assert np.abs(chest - (skin if bare else shirt)).max() <= 8
    assert np.abs(belly - shirt).max() <= 8  # the clothing question survives semi-nudity


def test_held_objects_are_drawn_at_the_face_or_the_hip():
  sc = _scenes(40, seed=6)
  alone, regions = _render(sc, people=_only(sc, 0))
  bare, _ = _render(sc, people=_only(sc, 0), parts=tuple(p for p in rv.PARTS if p != "held"))
  changed = _changed(alone, bare)
  ys, xs = np.meshgrid(
    (np.arange(SIZE) + 0.5) / SIZE, (np.arange(SIZE) + 0.5) / SIZE, indexing="ij"
  )
  sk = sv.skeleton(sc)
  for i in range(40):
    kind = sc["held"][i]
    if kind == sv.NOTHING:
      assert not changed[i].any()
      continue
    assert changed[i].sum() >= 3
    y, x = ys[changed[i]].mean(), xs[changed[i]].mean()
    h = sc["height"][i, 0]
    if kind in (sv.PHONE, sv.CUP):  # beside the face
      head = sk["head"][i, 0]
      assert np.hypot(x - head[0], y - head[1]) < 0.25 * h
    else:  # at the hip
      hip = sk["hip"][i, 0].mean(axis=0)
      assert np.hypot(x - hip[0], y - hip[1]) < 0.3 * h


def test_questions_truths_agree_with_the_scene():
  rng = np.random.default_rng(0)
  sc = sv.sample_scenes(rng, 400)
  types, prompts, truths = questions_v2._ask(rng, sc, clips=False)
  by_prompt = dict((p, t) for t, p in questions_v2.QUESTIONS_V2)
  counts = collections.Counter(types)
  assert set(counts) == set(questions_v2.QUESTION_TYPES_V2)
  person = sum(counts[t] for t in ("action", "held", "clothing", "headwear", "count"))
  assert person / len(types) >= 0.6
  for i, (kind, prompt, truth) in enumerate(zip(types, prompts, truths)):
    assert by_prompt[prompt] == kind and truth in questions_v2.CHOICES_V2[kind]
    shapes = [sv.SHAPES[s] for s in sc["object_shape"][i][sc["object_on"][i]]]
    expected = {
      "action": sv.ACTIONS[sc["action"][i, 0]],
      "held": sv.HELD[sc["held"][i]],
      "clothing": sv.SHIRT_COLORS[sc["shirt"][i, 0]],
      "headwear": sv.HEADWEAR[sc["headwear"][i, 0]],
      "count": ("one", "two", "three")[sc["count"][i] - 1],
    }.get(kind)
    if kind == "object":
      shape = prompt.removeprefix("What color is the ").removesuffix("?")
      k = shapes.index(shape)
      expected = sv.OBJECT_COLORS[sc["object_color"][i][sc["object_on"][i]][k]]
    elif kind == "scene":
      expected = "yes" if prompt.removeprefix("Is there a ").removesuffix("?") in shapes else "no"
    assert truth == expected, (i, prompt)
  scene = [t for k, t in zip(types, truths) if k == "scene"]
  assert 0.3 < scene.count("yes") / len(scene) < 0.7


def test_ten_answers_with_the_truth_as_majority():
  d = questions_v2.generate_v2(200, seed=1, image_size=32)
  vocab = set(questions_v2.ANSWER_VOCAB_V2)
  assert len(vocab) == len(questions_v2.ANSWER_VOCAB_V2)
  digit = dict(zip(synthetic.COUNT_DIGITS, synthetic.COUNT_WORDS))
  for answers, kind, action in zip(d["answers"], d["question_type"], d["action"]):
    assert len(answers) == 10 and set(answers) <= vocab
    top, n = collections.Counter(digit.get(a, a) for a in answers).most_common(1)[0]
    assert n >= 10 - synthetic.MAX_WRONG_ANSWERS and top in questions_v2.CHOICES_V2[kind]
    if kind == "action":
      assert top == sv.ACTIONS[action]


def test_clips_animate_the_pose_and_keep_the_rest():
  d = questions_v2.generate_v2(10, seed=1, image_size=32, clip_length=4)
  assert d["clip"].shape == (10, 4, 32, 32, 3) and set(d["question_type"]) == {"action"}
  assert all(a in sv.ACTIONS for a in d["answers"].ravel())
  motion = np.abs(np.diff(d["clip"].astype(np.int16), axis=1)).max(axis=(1, 2, 3, 4))
  assert (motion > 60).sum() >= 7
  # A clip's boxes bound every frame: they hold each frame's own boxes.
  # generate_v2's first chunk of seed 1: its first four scenes.
  rng = np.random.default_rng([questions_v2._STREAM, 1, 0])
  sc = sv.sample_scenes(rng, synthetic_generator._CHUNK_FRAMES // 4)  # the chunk size both share
  sc = {k: v[:4] for k, v in sc.items()}
  for t in range(4):
    frame = {**sc, "phase": sc["phase"] + np.float32(2 * np.pi * t / 4)}
    _, regions = rv.render(frame, 32, np.random.default_rng(0))
    assert (regions["person"][..., :2] >= d["person_box"][:4, ..., :2] - 1e-6).all()
    assert (regions["person"][..., 2:] <= d["person_box"][:4, ..., 2:] + 1e-6).all()


def _digest(d):
  h = hashlib.sha256()
  for k in sorted(d):
    h.update(k.encode())
    h.update(repr(d[k].tolist()).encode() if d[k].dtype == object else d[k].tobytes())
  return h.hexdigest()[:16]


# What generator revision `synthetic.V2_DATA_REVISION` draws. A changed generator fails this test:
# then bump the revision (a built dataset is found again by its config name, which holds it, so
# runs would otherwise read data of the old generator) and record the new digests here.
V2_DIGESTS = {
  2: {(6, 0, 64, 0): "a9474e07bcf3050b", (3, 4, 48, 3): "ae70dd1c6fa5c80b"},
}


def test_generator_output_is_pinned_to_its_data_revision():
  assert synthetic.V2_DATA_REVISION in V2_DIGESTS, "record the new revision's digests"
  for (n, seed, size, clip_length), expected in V2_DIGESTS[synthetic.V2_DATA_REVISION].items():
    d = questions_v2.generate_v2(n, seed=seed, image_size=size, clip_length=clip_length)
    assert _digest(d) == expected, "the generator changed: bump synthetic.V2_DATA_REVISION"
  names = {c.name for c in synthetic.AnonymaxSynthetic.BUILDER_CONFIGS if c.name.startswith("v2")}
  assert names and all(n.endswith(f"_r{synthetic.V2_DATA_REVISION}") for n in names)


def test_deterministic_prefix_stable_and_split_streams_disjoint():
  a = questions_v2.generate_v2(6, seed=7, image_size=32)
  assert _digest(a) == _digest(questions_v2.generate_v2(6, seed=7, image_size=32))
  assert _digest(a) != _digest(questions_v2.generate_v2(6, seed=8, image_size=32))
  long = questions_v2.generate_v2(300, seed=7, image_size=32)  # two chunks
  assert _digest(a) == _digest({k: v[:6] for k, v in long.items()})
  offsets = {0, questions_v2.VALIDATION_SEED_OFFSET, questions_v2.TEST_SEED_OFFSET}
  assert len(offsets) == 3
  draws = [questions_v2.generate_v2(4, seed=7 + o, image_size=32)["image"] for o in offsets]
  assert all(not np.array_equal(x, y) for i, x in enumerate(draws) for y in draws[i + 1 :])
  # Not v1's stream either.
  assert not np.array_equal(draws[0], synthetic.generate(4, seed=7, image_size=32)["image"])


def test_load_split_v2_through_the_pipeline(data_dir):
  kw = {"scenes": "v2", "image_size": 32, "seed": 3}
  val = pipeline.load_split("synthetic", "validation", data_dir=data_dir, num_examples=5, **kw)
  ref = questions_v2.generate_v2(5, seed=3 + questions_v2.VALIDATION_SEED_OFFSET, image_size=32)
  np.testing.assert_array_equal(val.visuals, ref["image"])
  np.testing.assert_array_equal(val.privacy, ref["privacy"])
  assert val.question_types == tuple(ref["question_type"])
  assert val.regions["face"].shape == (5, 3, 4) and val.regions["face"].dtype == np.float32
  assert val.regions["person"].shape == (5, 3, 4) and val.regions["valid"].dtype == np.bool_
  np.testing.assert_array_equal(val.regions["person"], ref["person_box"])
  np.testing.assert_array_equal(val.regions["valid"], ref["person_valid"])
  for q, kind in zip(val.queries, val.question_types):
    assert q.choices == questions_v2.CHOICES_V2[kind]
  assert val.class_names == sv.ACTIONS and val.attribute_names == synthetic.PRIVACY_ATTRIBUTES
  sub = val.subset([3, 1])
  assert sub.question_types == (val.question_types[3], val.question_types[1])
  np.testing.assert_array_equal(sub.regions["face"], val.regions["face"][[3, 1]])
  # A split does not depend on the other splits' sizes; the three splits differ.
  sizes = {"num_train": 2, "num_validation": 6, "num_test": 2}
  both = synthetic.load_split("validation", data_dir=data_dir, **kw, **sizes)
  np.testing.assert_array_equal(both.visuals[:5], val.visuals)
  train = synthetic.load_split("train", data_dir=data_dir, **kw, **sizes)
  test = synthetic.load_split("test", data_dir=data_dir, **kw, **sizes)
  assert not np.array_equal(train.visuals, test.visuals)
  assert not np.array_equal(train.visuals, both.visuals[:2])
  clips = synthetic.load_split("train", data_dir=data_dir, clip_length=2, num_examples=2, **kw)
  assert clips.visuals.shape == (2, 2, 32, 32, 3) and clips.question_types == ("action",) * 2
  assert clips.queries[0].prompt == questions_v2.ACTION_PROMPT_V2


def test_v2_config_names_cannot_collide_with_v1():
  v2 = synthetic.make_config(scenes="v2", image_size=32, num_train=2, num_test=2, seed=9)
  name = f"v2_images_s32_n2-500-2_seed9_r{synthetic.V2_DATA_REVISION}"
  assert v2.name == name and isinstance(v2, synthetic.SyntheticV2Config)
  names = [c.name for c in synthetic.AnonymaxSynthetic.BUILDER_CONFIGS]
  assert len(set(names)) == len(names)
  assert all(n.startswith("v2_") == isinstance(c, synthetic.SyntheticV2Config)
             for n, c in zip(names, synthetic.AnonymaxSynthetic.BUILDER_CONFIGS))  # fmt: skip
  assert synthetic.make_config(scenes="v2") is synthetic.AnonymaxSynthetic.BUILDER_CONFIGS[2]


def test_split_checks_its_new_fields():
  n = 2
  good = {
    "visuals": np.zeros((n, 8, 8, 3), np.uint8),
    "privacy": np.zeros((n, 7), np.float32),
    "queries": [Query("q", ("a",))] * n,
    "labels": np.zeros(n, np.int32),
    "attribute_names": synthetic.PRIVACY_ATTRIBUTES,
    "class_names": sv.ACTIONS,
  }
  regions = {
    "face": np.zeros((n, 3, 4), np.float32),
    "person": np.zeros((n, 3, 4), np.float32),
    "valid": np.ones((n, 3), bool),
  }
  split = Split(**good, question_types=("held", "count"), regions=regions)
  assert Split(**good).question_types is None and Split(**good).regions is None
  assert split.subset([1]).question_types == ("count",)
  with pytest.raises(ValueError, match="question_types"):
    Split(**good, question_types=("held",))
  with pytest.raises(ValueError, match="regions"):
    Split(**good, regions={**regions, "face": np.zeros((n, 3, 4), np.float64)})
  with pytest.raises(ValueError, match="regions"):
    Split(**good, regions={"face": regions["face"], "valid": regions["valid"]})
  with pytest.raises(ValueError, match="valid"):
    Split(**good, regions={**regions, "valid": np.ones((n + 1, 3), bool)})
