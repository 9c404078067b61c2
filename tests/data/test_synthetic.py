"""Tests of the synthetic benchmark's generator: shapes, determinism, attributes, answers, tension."""

from __future__ import annotations

import collections
import hashlib

import numpy as np
import pytest

from anonymax.data import synthetic
from anonymax.data import synthetic_scenes as ss

SIZE = 64


@pytest.fixture(scope="module")
def big():
  """2000 images: enough for rough statistics, about a second to draw."""
  return synthetic.generate(2000, seed=0)


def test_images_shapes_and_dtypes():
  d = synthetic.generate(5, seed=3, image_size=48)
  assert set(d) == {"image", "privacy", "action", "question", "answers", "question_type"}
  assert d["image"].shape == (5, 48, 48, 3) and d["image"].dtype == np.uint8
  assert d["privacy"].shape == (5, 7) and d["privacy"].dtype == np.float32
  assert set(np.unique(d["privacy"])) <= {0.0, 1.0}
  assert d["action"].shape == (5,) and d["action"].dtype == np.int32
  assert d["question"].shape == (5,) and d["question"].dtype == object
  assert d["answers"].shape == (5, 10) and d["answers"].dtype == object
  assert d["question_type"].shape == (5,) and d["question_type"].dtype == object


def test_clips_shapes_motion_and_constant_attributes():
  d = synthetic.generate(12, seed=1, image_size=32, clip_length=4)
  assert "image" not in d
  assert d["clip"].shape == (12, 4, 32, 32, 3) and d["clip"].dtype == np.uint8
  # Clips always ask for the action, and the ten answers name an action.
  assert set(d["question_type"]) == {"action"}
  assert all(a in synthetic.ACTIONS for a in d["answers"].ravel())
  diff = np.abs(np.diff(d["clip"].astype(np.int16), axis=1))  # [n, T-1, S, S, 3]
  # The pose moves between frames (the action needs the frames): far beyond the ±6 noise.
  moving = d["action"] != synthetic.ACTIONS.index("standing")
  assert moving.sum() >= 6
  assert (diff[moving].max(axis=(2, 3, 4)) > 60).all()
  # The outer side columns (card, companion, objects; x < 0.2 or x > 0.84, beyond the reach of
  # the limbs) stay constant up to the per-frame noise (±6).
  columns = np.r_[0:6, 27:32]
  assert diff[:, :, :, columns].max() <= 12


def test_same_seed_same_arrays_different_seed_different():
  a = synthetic.generate(6, seed=7)
  b = synthetic.generate(6, seed=7)
  c = synthetic.generate(6, seed=8)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["image"], c["image"])


def test_generate_is_prefix_stable_across_chunks():
  # 300 examples span two generation chunks; the first 5 must not depend on N.
  long = synthetic.generate(300, seed=2, image_size=32)
  short = synthetic.generate(5, seed=2, image_size=32)
  for k in short:
    np.testing.assert_array_equal(short[k], long[k][:5])
  assert len(long["action"]) == 300


def test_zero_examples():
  d = synthetic.generate(0, seed=0, clip_length=2, image_size=32)
  assert d["clip"].shape == (0, 2, 32, 32, 3)
  assert d["answers"].shape == (0, 10)


@pytest.mark.parametrize(
  "kwargs, field",
  [
    ({"image_size": 16}, "image_size"),
    ({"image_size": 40.5}, "image_size"),
    ({"clip_length": -1}, "clip_length"),
    ({"seed": -1}, "seed"),
  ],
)
def test_bad_arguments_name_the_field(kwargs, field):
  with pytest.raises(ValueError, match=field):
    synthetic.generate(2, **{"seed": 0, **kwargs})
  with pytest.raises(ValueError, match="num_examples"):
    synthetic.generate(-1, seed=0)


def test_privacy_labels_hand_computed():
  sc = {
    "long_hair": np.array([True, False]),
    "face": np.array([ss.FACE_PARTIAL, ss.FACE_COMPLETE]),
    "bare_torso": np.array([False, True]),
    "skin_tone": np.array([3, 2]),  # 3 is the first darker tone, 2 the last lighter one
    "card": np.array([True, False]),
    "companion": np.array([False, True]),
  }
  expected = np.array([[1, 0, 1, 0, 1, 1, 0], [0, 1, 0, 1, 0, 0, 1]], np.float32)
  np.testing.assert_array_equal(synthetic.privacy_labels(sc), expected)


def test_attributes_independent_of_action(big):
  privacy, action = big["privacy"], big["action"]
  # Every attribute present often enough to learn (a9/a10 come from one three-way draw).
  rate = privacy.mean(axis=0)
  assert ((rate > 0.25) & (rate < 0.75)).all(), rate
  assert not (privacy[:, 1] * privacy[:, 2]).any()  # complete and partial face never together
  counts = np.bincount(action, minlength=len(synthetic.ACTIONS))
  assert counts.min() > 2000 / len(synthetic.ACTIONS) / 2
  onehot = np.eye(len(synthetic.ACTIONS))[action]
  corr = np.corrcoef(np.concatenate([onehot, privacy], axis=1).T)[
    : onehot.shape[1], onehot.shape[1] :
  ]
  # With n = 2000 the standard error of a null correlation is about 0.022.
  assert np.abs(corr).max() < 0.1, corr


def test_questions_and_answers(big):
  prompts = dict((p, t) for t, p in synthetic.QUESTIONS)
  vocab = set(synthetic.ANSWER_VOCAB)
  assert len(vocab) == len(synthetic.ANSWER_VOCAB)
  assert all(a == a.lower() and a.strip() == a for a in vocab)
  digit_to_word = dict(zip(synthetic.COUNT_DIGITS, synthetic.COUNT_WORDS))
  noisy = 0
  for q, qtype, answers, action in zip(
    big["question"], big["question_type"], big["answers"], big["action"]
  ):
    assert prompts[q] == qtype
    assert set(answers) <= vocab
    words = [digit_to_word.get(a, a) for a in answers]
    top, n_top = collections.Counter(words).most_common(1)[0]
    assert n_top >= 10 - synthetic.MAX_WRONG_ANSWERS
    assert top in synthetic.CHOICES[qtype]
    if qtype == "action":
      assert top == synthetic.ACTIONS[action]
    noisy += len(set(answers)) > 1
  # Annotators err at 10 %: about 1 − 0.9¹⁰ ≈ 65 % of questions show some disagreement.
  assert 0.4 < noisy / len(big["answers"]) < 0.9
  types = collections.Counter(big["question_type"])
  assert set(types) == set(synthetic.QUESTION_TYPES)
  assert types["action"] > types["count"]


def _base_scenes(n=8, seed=0):
  """Standing people (no vertical offset) with every privacy attribute off."""
  sc = ss.sample_scenes(np.random.default_rng(seed), n)
  sc["action"][:] = synthetic.ACTIONS.index("standing")
  sc["long_hair"][:] = False
  sc["face"][:] = ss.FACE_HIDDEN
  sc["bare_torso"][:] = False
  sc["skin_tone"][:] = 0
  sc["card"][:] = False
  sc["companion"][:] = False
  return sc


def _render(sc):
  return ss.render(sc, SIZE, np.random.default_rng(123)).astype(np.int16)


def _box_mask(x0, x1, y0, y1):
  """Pixels whose centres lie in [x0, x1] × [y0, y1] (normalised), widened by 1.5 pixels."""
  c = (np.arange(SIZE) + 0.5) / SIZE
  m = 1.5 / SIZE
  return ((c[:, None] >= y0 - m) & (c[:, None] <= y1 + m)) & (
    (c[None, :] >= x0 - m) & (c[None, :] <= x1 + m)
  )


def _expected_region(attribute, cx, side):
  """Where an attribute may change pixels, from the layout constants (normalised units)."""
  top, r = ss.FIGURE_TOP, ss.HEAD_R
  hy = top + ss.HEAD_Y
  head = _box_mask(cx - 1.1 * r, cx + 1.1 * r, hy - 1.1 * r, hy + 1.1 * r)
  column = 0.5 + side * ss.SIDE_X
  if attribute == "a4_gender":  # strands beside the head down to the shoulders
    return _box_mask(cx - 1.4 * r, cx + 1.4 * r, hy - 1.1 * r, hy + 2.3 * r)
  if attribute in ("a9_face_complete", "a10_face_partial"):
    return head
  if attribute == "a12_semi_nudity":
    return _box_mask(
      cx - ss.SHOULDER_DX, cx + ss.SHOULDER_DX, top + ss.SHOULDER_Y - 0.01, top + ss.HIP_Y
    )
  if attribute == "a17_color":  # head and neck (the torso is clothed in the base scene)
    return head | _box_mask(cx - 0.4 * r, cx + 0.4 * r, hy, top + ss.SHOULDER_Y)
  if attribute == "a64_rel_personal":
    return _box_mask(
        column - ss.CARD_W / 2, column + ss.CARD_W / 2, ss.CARD_Y - ss.CARD_H / 2,
        ss.CARD_Y + ss.CARD_H / 2,
    )  # fmt: skip
  if attribute == "a65_rel_social":
    return _box_mask(column - 0.1, column + 0.1, ss.COMPANION_TOP, ss.FLOOR_Y)
  raise AssertionError(attribute)


TOGGLES = {
  "a4_gender": ("long_hair", True),
  "a9_face_complete": ("face", ss.FACE_COMPLETE),
  "a10_face_partial": ("face", ss.FACE_PARTIAL),
  "a12_semi_nudity": ("bare_torso", True),
  "a17_color": ("skin_tone", 5),
  "a64_rel_personal": ("card", True),
  "a65_rel_social": ("companion", True),
}


def test_toggles_cover_every_attribute():
  assert tuple(TOGGLES) == synthetic.PRIVACY_ATTRIBUTES


@pytest.mark.parametrize("attribute", synthetic.PRIVACY_ATTRIBUTES)
def test_each_attribute_changes_pixels_only_in_its_region(attribute):
  base = _base_scenes()
  field, value = TOGGLES[attribute]
  on = {k: v.copy() for k, v in base.items()}
  on[field][:] = value
  i = synthetic.PRIVACY_ATTRIBUTES.index(attribute)
  assert (synthetic.privacy_labels(base)[:, i] == 0).all()
  assert (synthetic.privacy_labels(on)[:, i] == 1).all()
  changed = (np.abs(_render(on) - _render(base)) > 0).any(axis=-1)  # [n, S, S]
  for k in range(changed.shape[0]):
    region = _expected_region(attribute, base["cx"][k], base["side"][k])
    assert changed[k].sum() >= 3, f"{attribute} invisible in scene {k}"
    outside = changed[k] & ~region
    assert not outside.any(), f"{attribute} leaks outside its region: {np.argwhere(outside)[:5]}"
    # The utility content stays untouched: the objects column and the legs.
    objects_x = 0.5 - base["side"][k] * ss.SIDE_X
    objects = _box_mask(objects_x - 0.1, objects_x + 0.1, 0, 1)
    cx = base["cx"][k]
    legs = _box_mask(cx - 0.12, cx + 0.12, ss.FIGURE_TOP + ss.HIP_Y + 0.03, 1.0)
    assert not (changed[k] & (objects | legs)).any()


def test_action_changes_the_person_not_the_privacy_regions():
  base = _base_scenes()
  other = {k: v.copy() for k, v in base.items()}
  other["action"][:] = synthetic.ACTIONS.index("stretching")
  changed = (np.abs(_render(other) - _render(base)) > 0).any(axis=-1)
  for k in range(changed.shape[0]):
    assert changed[k].sum() > 30  # both arms moved
    side, cx = base["side"][k], base["cx"][k]
    privacy = _expected_region("a64_rel_personal", cx, side) | _expected_region(
      "a65_rel_social", cx, side
    )
    assert not (changed[k] & privacy).any()


def _gaussian_blur(images, sigma):
  """Separable Gaussian blur of float images [n, S, S, 3] (edge padding)."""
  radius = int(3 * sigma)
  x = np.arange(-radius, radius + 1)
  k = np.exp(-0.5 * (x / sigma) ** 2)
  k /= k.sum()
  out = images.astype(np.float32)
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (radius, radius)
    padded = np.pad(out, pad, mode="edge")
    out = sum(w * np.take(padded, np.arange(i, i + SIZE), axis=axis) for i, w in enumerate(k))
  return out


def test_tension_blur_destroys_pose_but_masking_privacy_keeps_it():
  """Pixel-level proxy of the tension: the action contrast under two anonymizers.

  Action contrast = RMS of x(action a) − x(action b) over the person's column, for the same scene
  (the L2 distance a matched filter separates the two actions by).
  A strong blur of the whole image wipes most of it out; blanking only the privacy regions (head,
  card and companion columns) keeps most of it, so a good anonymizer exists.
  """
  sc = ss.sample_scenes(np.random.default_rng(5), 16)
  other = {k: v.copy() for k, v in sc.items()}
  other["action"] = (sc["action"] + 1 + np.arange(16) % 6).astype(np.int32) % len(synthetic.ACTIONS)
  a, b = _render(sc).astype(np.float32), _render(other).astype(np.float32)
  person = _box_mask(0.19, 0.81, 0, 1)

  def contrast(x, y):
    return np.sqrt(np.mean((x - y)[:, person] ** 2))

  raw = contrast(a, b)
  blurred = contrast(_gaussian_blur(a, 3.0), _gaussian_blur(b, 3.0))
  assert blurred < 0.5 * raw, (blurred, raw)
  # The blur itself changes the pose region substantially.
  assert np.abs(_gaussian_blur(a, 3.0) - a)[:, person].mean() > 5.0

  # Blank the privacy regions (grey): the action contrast survives.
  def blank(x, scenes):
    x = x.copy()
    for k in range(x.shape[0]):
      cx, hy, r = scenes["cx"][k], ss.FIGURE_TOP + ss.HEAD_Y, ss.HEAD_R
      column = 0.5 + scenes["side"][k] * ss.SIDE_X
      mask = _box_mask(cx - 1.2 * r, cx + 1.2 * r, 0, hy + 1.2 * r) | _box_mask(
        column - 0.1, column + 0.1, 0, 1
      )
      x[k][mask] = 128.0
    return x

  kept = contrast(blank(a, sc), blank(b, sc))
  assert kept > 0.8 * raw, (kept, raw)


# --------------------------------------------------------------------------------------------------
# Scenes v1 stay exactly as they were next to v2 (published figures depend on them).


def _digest(d):
  """sha256 of a generated dict: every array's dtype, shape and bytes (object arrays' reprs)."""
  h = hashlib.sha256()
  for k in sorted(d):
    v = d[k]
    h.update(k.encode())
    if v.dtype == object:
      h.update(repr(v.tolist()).encode())
    else:
      h.update(str(v.dtype).encode())
      h.update(repr(v.shape).encode())
      h.update(np.ascontiguousarray(v).tobytes())
  return h.hexdigest()


# Computed with the generator as it was before scenes v2 existed.
V1_DIGESTS = [
  ((12, 0, 32, 0), "879d3fe1525808fa2bddd0384236aee21a54dd2e197797842bc5de3237116883"),
  ((3, 5, 48, 3), "02807c1382bca1ac361155a4a78045b215e9320dec36cd9b3441827496e5051d"),
  ((4, 1 + 1_000_003, 64, 0), "ec74f580eac9f2c302396bb5570ca286bbf5b7a3f6bf58372d084fcc0eb8fb4a"),
]


@pytest.mark.parametrize("args, expected", V1_DIGESTS)
def test_v1_generator_is_bit_identical(args, expected):
  n, seed, size, clip_length = args
  d = synthetic.generate(n, seed=seed, image_size=size, clip_length=clip_length)
  assert _digest(d) == expected


def test_v1_builder_names_are_unchanged():
  assert synthetic.AnonymaxSynthetic.name == "anonymax_synthetic"
  assert str(synthetic.AnonymaxSynthetic.VERSION) == "1.0.0"
  names = [c.name for c in synthetic.AnonymaxSynthetic.BUILDER_CONFIGS[:2]]
  assert names == ["images_s64_n4000-1000_seed0", "clips8_s64_n1000-250_seed0"]
  cfg = synthetic.make_config(scenes="v1", image_size=32, num_train=3, num_test=0, seed=2)
  assert cfg.name == "images_s32_n3-0_seed2" and type(cfg) is synthetic.SyntheticConfig


def test_v1_loads_exactly_as_before_and_has_no_validation(data_dir):
  kw = {"scenes": "v1", "image_size": 32, "seed": 3}
  split = synthetic.load_split("test", data_dir=data_dir, num_examples=3, **kw)
  ref = synthetic.generate(3, seed=3 + synthetic.TEST_SEED_OFFSET, image_size=32)
  np.testing.assert_array_equal(split.visuals, ref["image"])
  assert [q.prompt for q in split.queries] == list(ref["question"])
  assert split.class_names == synthetic.ACTIONS
  assert split.question_types is None and split.regions is None
  with pytest.raises(ValueError, match="split='validation'") as e:
    synthetic.load_split("validation", data_dir=data_dir, **kw)
  assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="num_validation"):
    synthetic.load_split("train", data_dir=data_dir, num_validation=2, **kw)
  with pytest.raises(ValueError, match="scenes"):
    synthetic.load_split("train", data_dir=data_dir, scenes="v3")
