"""Scenes v2 of the synthetic benchmark: what is in a scene and where (sampling and skeletons).

A v2 scene is a room (wall and floor of varied colours and textures, lit with a global gain and a
left-right or top-bottom gradient) with one to three people and up to three objects on the floor.
Normalised coordinates: x right, y down, the image is [0, 1]². People stand at random positions
and scales (heights 0.45-0.8 of the image, feet on a floor line that varies, neighbours may
overlap a little) and are drawn back to front. Person slot 0 is the **main person**: the largest,
drawn in front; the person-questions (action, held object, shirt colour, headwear) are about them.

Private content is drawn where the useful content is: the face (complete, in profile, or the back
of the head) under the headwear, long hair beside it, bare shoulders above the shirt, a badge on
the chest, the main person's skin tone on the face, neck and hands that hold the object, and two
joined hands. Every image-level privacy bit is drawn independently of the others and of the
utility content (the holding of hands needs a second person); the people who carry a bit are then
chosen among those present (`_carriers`).

This module samples scene parameters (`sample_scenes`) and computes the people's skeletons for
one frame (`skeleton`); `scenes_v2_render` paints them.
"""

from __future__ import annotations

import numpy as np

ACTIONS = ("standing", "waving", "jumping", "walking", "sitting", "kicking", "stretching")
HELD = ("phone", "cup", "book", "bag", "nothing")
PHONE, CUP, BOOK, BAG, NOTHING = range(len(HELD))
HEADWEAR = ("hat", "cap", "nothing")
HAT, CAP, BARE_HEAD = range(len(HEADWEAR))
SHIRT_COLORS = ("red", "green", "blue", "yellow", "purple")
SHAPES = ("ball", "box", "cone")
OBJECT_COLORS = ("red", "green", "blue", "yellow")
MAX_PEOPLE = 3
MAX_OBJECTS = 3
NUM_SKIN_TONES = 6  # tones 0-2 are lighter, 3-5 darker (a17_color: the main person's tone)
FACE_BACK, FACE_COMPLETE, FACE_PARTIAL = 0, 1, 2

# The body, in units of the person's height H, relative to the top of the figure and its centre.
HEAD_Y, HEAD_R = 0.11, 0.095
SHOULDER_Y, SHOULDER_DX = 0.235, 0.1
CHEST_Y = 0.33  # bare shoulders: skin from the shoulder line down to here, the shirt below
HIP_Y, HIP_DX = 0.545, 0.065
UPPER_ARM, FOREARM, ARM_R, HAND_R = 0.15, 0.14, 0.04, 0.045
THIGH, SHIN, LEG_R = 0.21, 0.2, 0.05
OBJECT_R = 0.085  # objects keep one size (image units)
CARRY_OTHERS = 0.35  # once a privacy bit is on, each further person carries it with this chance

# Pose table: per action, rows of (base, amplitude, phase shift); a row's value at phase φ is
# base + amplitude · sin(φ + shift). Rows 0-7 are outward limb angles in degrees (0 = down,
# 90 = horizontal away from the body, 180 = up): the figure's left upper arm, forearm, right upper
# arm, forearm, left thigh, shin, right thigh, shin. Row 8 is the body's vertical offset, rows 9-10
# the head's offset (dx towards the figure's right, dy down) in units of H, row 11 its tilt in
# degrees. Arms, legs and head all differ between actions, so the action stays readable when an
# arm holds something or another hand.
_PI = np.pi
# fmt: off
POSES = np.array([
    # standing: arms hang, legs together, head upright
    [[8, 3, 0], [4, 3, 0], [8, 3, _PI], [4, 3, _PI], [4, 0, 0], [2, 0, 0], [4, 0, 0], [2, 0, 0],
     [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
    # waving: the right arm high up, its hand swings; the right knee bent; the head tilts to it
    [[12, 0, 0], [6, 0, 0], [155, 8, 0], [170, 20, 0], [4, 0, 0], [2, 0, 0], [30, 0, 0],
     [-12, 0, 0], [0, 0, 0], [0.03, 0, 0], [0, 0, 0], [16, 5, 0]],
    # jumping: arms up in a V, knees bent outwards, the body bounces, the chin up
    [[140, 10, 0], [155, 15, 0], [140, 10, 0], [155, 15, 0], [30, 10, 0], [6, 10, 0],
     [30, 10, 0], [6, 10, 0], [-0.05, 0.04, 0], [0, 0, 0], [-0.025, 0, 0], [0, 0, 0]],
    # walking: arms and legs swing in opposition, the head sways
    [[20, 22, 0], [15, 25, 0], [20, 22, _PI], [15, 25, _PI], [20, 16, _PI], [6, 20, _PI],
     [20, 16, 0], [6, 20, 0], [0, 0, 0], [0, 0.015, 0], [0, 0, 0], [0, 6, 0]],
    # sitting: thighs horizontal, the body lowered, forearms gesturing, a nod
    [[25, 5, 0], [60, 20, 0], [25, 5, _PI], [60, 20, _PI], [85, 3, 0], [5, 3, 0], [85, 3, 0],
     [5, 3, 0], [0.18, 0, 0], [0, 0, 0], [0.04, 0.01, 0], [0, 0, 0]],
    # kicking: the right leg swings up, arms out for balance, the head tilts away
    [[50, 10, 0], [60, 10, 0], [50, 10, 0], [60, 10, 0], [4, 0, 0], [2, 0, 0], [60, 20, 0],
     [75, 20, 0], [0, 0, 0], [-0.025, 0, 0], [0, 0, 0], [-14, 0, 0]],
    # stretching: both arms horizontal, legs wide and straight, looking up
    [[90, 6, 0], [90, 10, 0], [90, 6, 0], [90, 10, 0], [24, 0, 0], [24, 0, 0], [24, 0, 0],
     [24, 0, 0], [0, 0, 0], [0, 0, 0], [-0.035, 0, 0], [0, 8, 0]],
], np.float32)
# fmt: on
assert POSES.shape[:2] == (len(ACTIONS), 12)


def _random_slot(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
  """One slot per row, uniform among the true entries of `mask` [n, k] (0 where there is none)."""
  keys = np.where(mask, rng.random(mask.shape), -1.0)
  return np.argmax(keys, axis=1)


def _carriers(rng: np.random.Generator, on: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """Who carries an image-level bit `on` [n]: one random person, each other with `CARRY_OTHERS`."""
  first = _random_slot(rng, valid)
  extra = rng.random(valid.shape) < CARRY_OTHERS
  out = (extra & valid) | (np.arange(MAX_PEOPLE)[None] == first[:, None])
  return out & on[:, None]


def _faces(rng, complete: np.ndarray, partial: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """Face states [n, 3]: a complete face on one person if `complete`, a profile on another if
  `partial` (a single person shows only one of them), the others turned away or, with
  `CARRY_OTHERS`, showing one of the drawn states."""
  n = valid.shape[0]
  face = np.full((n, MAX_PEOPLE), FACE_BACK, np.int32)
  rows = np.arange(n)
  k = _random_slot(rng, valid)
  face[rows[complete], k[complete]] = FACE_COMPLETE
  free = valid & (face == FACE_BACK)
  k = _random_slot(rng, free)
  put = partial & free.any(axis=1)
  face[rows[put], k[put]] = FACE_PARTIAL
  extra = valid & (face == FACE_BACK) & (rng.random(valid.shape) < CARRY_OTHERS)
  both = complete & partial
  state = np.where(rng.random(valid.shape) < 0.5, FACE_COMPLETE, FACE_PARTIAL)
  state = np.where(both[:, None], state, np.where(complete, FACE_COMPLETE, FACE_PARTIAL)[:, None])
  extra &= (complete | partial)[:, None]
  face[extra] = state[extra]
  return face


def _headwear(rng, n: int) -> np.ndarray:
  """Headwear [n, 3]: the main person's uniform over `HEADWEAR` (a balanced question), the
  others' mostly none (75 %), so that the question is about the main person's head."""
  wear = rng.integers(0, len(HEADWEAR), (n, MAX_PEOPLE))
  hat_or_cap = rng.integers(0, 2, (n, MAX_PEOPLE))
  others = np.where(rng.random((n, MAX_PEOPLE)) < 0.75, BARE_HEAD, hat_or_cap)
  wear[:, 1:] = others[:, 1:]
  return wear.astype(np.int32)


def _reach(sy_a, sy_b, h_a, h_b):
  """Where two people of heights h_a, h_b with shoulders at heights sy_a, sy_b join hands.

  Each arm reaches r = 0.95 · (upper arm + forearm) · H; the hands meet at the middle of the band
  of heights both reach (from 0.6 r above to 0.85 r below the shoulder). Returns (y, ha, hb): the
  height of the joined hands and each arm's horizontal reach there.
  """
  ra, rb = 0.95 * (UPPER_ARM + FOREARM) * h_a, 0.95 * (UPPER_ARM + FOREARM) * h_b
  lo = np.maximum(sy_a - 0.6 * ra, sy_b - 0.6 * rb)
  hi = np.minimum(sy_a + 0.85 * ra, sy_b + 0.85 * rb)
  y = 0.5 * (lo + hi)
  ha = np.sqrt(np.maximum(ra**2 - (y - sy_a) ** 2, 1e-8))
  hb = np.sqrt(np.maximum(rb**2 - (y - sy_b) ** 2, 1e-8))
  return y, ha, hb


def _shoulder_y(feet, height, action):
  """The shoulders' height of people at rest in their action's mean pose."""
  return feet - height + (POSES[action, 8, 0] + SHOULDER_Y) * height


def _layout(rng, sc: dict[str, np.ndarray]) -> None:
  """Horizontal positions ``cx`` [n, 3] and the hand-holding partner, written into `sc`.

  People stand in a random left-to-right order. Neighbours are 0.85 of their body widths
  (0.42 H) apart, squeezed when they do not fit; the main person and the partner are exactly as
  far apart as their arms join comfortably (0.85 of the horizontal reach of `_reach`). The slack
  is spread over the gaps at random (a Dirichlet draw), so every position is possible.
  """
  n = sc["count"].shape[0]
  height, feet, action = sc["height"], sc["feet"], sc["action"]
  order = np.argsort(rng.random((n, MAX_PEOPLE)) + 2.0 * ~sc["valid"], axis=1)
  side_pick = rng.random(n) < 0.5
  slack = -np.log(rng.random((n, MAX_PEOPLE + 1)))
  cx = np.full((n, MAX_PEOPLE), 0.5, np.float32)
  partner = np.full(n, -1, np.int32)
  sy = _shoulder_y(feet, height, action)
  for i in range(n):
    c = int(sc["count"][i])
    slots = order[i, :c]
    h = height[i, slots].astype(np.float64)
    spacing = 0.85 * 0.21 * (h[:-1] + h[1:])  # centre distances of neighbours (0.85 of widths)
    fixed = np.zeros(max(c - 1, 0), bool)
    if sc["clasp"][i]:
      pos = int(np.flatnonzero(slots == 0)[0])
      options = [p for p in (pos - 1, pos + 1) if 0 <= p < c]
      other = options[int(side_pick[i]) % len(options)]
      partner[i] = slots[other]
      _, ha, hb = _reach(sy[i, 0], sy[i, partner[i]], height[i, 0], height[i, partner[i]])
      gap = min(pos, other)
      spacing[gap] = 0.85 * (ha + hb) + SHOULDER_DX * (height[i, 0] + height[i, partner[i]])
      fixed[gap] = True
    margin = 0.2 * h[0] + 0.2 * h[-1]
    free = 1.0 - margin - spacing.sum()
    loose = spacing[~fixed].sum()
    if free < 0 and loose > 0:  # squeeze the loose neighbours (they overlap more)
      shrink = max(0.5, 1.0 + free / loose)
      spacing[~fixed] *= shrink
      free = 1.0 - margin - spacing.sum()
    gaps = slack[i, : c + 1].copy()
    gaps[1:c][fixed] = 0.0
    gaps = max(free, 0.0) * gaps / gaps.sum()
    x = 0.2 * h[0] + gaps[0] + np.concatenate([[0.0], np.cumsum(spacing + gaps[1:c])])
    if free < 0:  # still too wide: centre the group (its ends leave the image a little)
      x += 0.5 * free
    cx[i, slots] = x
  sc["cx"] = cx
  sc["partner"] = partner


def sample_scenes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
  """Draws n independent v2 scenes.

  Returns:
    A dict of per-scene arrays (leading axis n; person fields [n, 3], slot 0 the main person):
    ``count``, ``valid``; per person ``height``, ``feet``, ``cx``, ``action``, ``phase``,
    ``mirror``, ``shirt`` (into `SHIRT_COLORS`), ``headwear`` (into `HEADWEAR`), the privacy
    fields ``long_hair``, ``face`` (FACE_*), ``face_side``, ``bare``, ``badge``, ``skin_tone``;
    the main person's ``held`` (into `HELD`) and ``held_side``; ``clasp`` (the main person holds
    hands with slot ``partner``); the objects ``object_on``, ``object_shape``, ``object_color``,
    ``object_x``, ``object_y`` [n, 3]; ``depth`` [n, 3] (slots back to front, the main person
    last); and nuisance fields (colours, textures, lighting).
  """
  p = MAX_PEOPLE
  count = rng.integers(1, p + 1, n).astype(np.int32)
  valid = np.arange(p)[None] < count[:, None]
  # The main person is clearly the largest (by 0.07 H at least).
  h_main = rng.uniform(0.6, 0.8, n)
  others = 0.45 + rng.random((n, p - 1)) * (h_main[:, None] - 0.07 - 0.45)
  height = np.concatenate([h_main[:, None], others], axis=1).astype(np.float32)
  # Smaller people stand further back: their feet a little higher on the floor.
  feet = (rng.uniform(0.88, 0.97, n)[:, None] - 0.15 * (h_main[:, None] - height)).astype(
    np.float32
  )
  want = rng.random((n, 7)) < 0.5  # image-level privacy bits, in PRIVACY_ATTRIBUTES order
  skin = rng.integers(0, NUM_SKIN_TONES // 2, (n, p))  # only the main person may be darker
  skin[:, 0] += np.where(want[:, 4], NUM_SKIN_TONES // 2, 0)
  sc = {
    "count": count,
    "valid": valid,
    "height": height,
    "feet": feet,
    "action": rng.integers(0, len(ACTIONS), (n, p)).astype(np.int32),
    "phase": rng.uniform(0, 2 * np.pi, (n, p)).astype(np.float32),
    "mirror": rng.choice(np.array([-1.0, 1.0], np.float32), (n, p)),
    "shirt": rng.integers(0, len(SHIRT_COLORS), (n, p)).astype(np.int32),
    "headwear": _headwear(rng, n),
    "held": rng.integers(0, len(HELD), n).astype(np.int32),
    "long_hair": _carriers(rng, want[:, 0], valid),
    "face": _faces(rng, want[:, 1], want[:, 2], valid),
    "face_side": rng.choice(np.array([-1.0, 1.0], np.float32), (n, p)),
    "bare": _carriers(rng, want[:, 3], valid),
    "skin_tone": skin.astype(np.int32),
    "clasp": want[:, 5] & (count >= 2),
    "badge": _carriers(rng, want[:, 6], valid),
    "badge_side": rng.choice(np.array([-1.0, 1.0], np.float32), (n, p)),
    # Nuisance: colours (indices into the renderer's palettes), background, lighting.
    "hair_color": rng.integers(0, 4, (n, p)),
    "sleeves": rng.integers(0, 4, (n, p)),
    "trousers": rng.integers(0, 4, (n, p)),
    "hat_color": rng.integers(0, 2, (n, p)),
    "held_color": rng.integers(0, 3, n),
    "wall": rng.integers(0, 6, n),
    "floor": rng.integers(0, 5, n),
    "wall_texture": rng.integers(0, 4, n),
    "floor_texture": rng.integers(0, 3, n),
    "texture": rng.uniform(0, 1, (n, 4)).astype(np.float32),
    "horizon": rng.uniform(0.45, 0.68, n).astype(np.float32),
    "gain": rng.uniform(0.75, 1.1, n).astype(np.float32),
    "light_axis": rng.integers(0, 2, n),
    "light_slope": rng.uniform(-0.25, 0.25, n).astype(np.float32),
  }
  _layout(rng, sc)
  # The hand that holds the object: away from the joined hands, else the one that does not wave
  # (the waving arm is on the image side `mirror`), else either.
  toward = np.sign(sc["cx"][np.arange(n), np.maximum(sc["partner"], 0)] - sc["cx"][:, 0])
  toward = np.where(toward == 0, 1.0, toward).astype(np.float32)
  sc["clasp_side"] = toward
  free_side = rng.choice(np.array([-1.0, 1.0], np.float32), n)
  waving = sc["action"][:, 0] == ACTIONS.index("waving")
  free_side = np.where(waving, -sc["mirror"][:, 0], free_side)
  sc["held_side"] = np.where(sc["clasp"], -toward, free_side).astype(np.float32)
  # Back to front: the others by height, the main person last (invalid slots are never drawn).
  rest = 1 + np.argsort(height[:, 1:], axis=1)
  sc["depth"] = np.concatenate([rest, np.zeros((n, 1), rest.dtype)], axis=1)
  _place_objects(rng, sc)
  return sc


def _place_objects(rng, sc: dict[str, np.ndarray]) -> None:
  """Up to three objects of distinct shapes on the floor, clear of the main person.

  The main person's horizontal extent over a whole pose cycle (joints ± 0.2 H, which holds the
  limbs' thickness, what the hands hold and the headwear) is kept free, so objects never hide the
  person the questions are about and the person never hides them; an object that finds no free
  place in 12 tries is left out.
  """
  n = sc["count"].shape[0]
  lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
  for phase in np.linspace(0, 2 * np.pi, 8, endpoint=False):
    sk = skeleton({**sc, "phase": sc["phase"] + np.float32(phase)})
    xs = np.concatenate([v[..., 0] for v in _joints(sk)], axis=1)
    lo, hi = np.minimum(lo, xs.min(axis=1)), np.maximum(hi, xs.max(axis=1))
  reach = 0.2 * sc["height"][:, 0] + OBJECT_R + 0.01
  lo, hi = lo - reach, hi + reach
  wanted = rng.integers(1, MAX_OBJECTS + 1, n)
  shapes = np.argsort(rng.random((n, len(SHAPES))), axis=1)[:, :MAX_OBJECTS]
  tries = rng.uniform(OBJECT_R + 0.01, 1 - OBJECT_R - 0.01, (n, MAX_OBJECTS, 12))
  on = np.zeros((n, MAX_OBJECTS), bool)
  x = np.zeros((n, MAX_OBJECTS), np.float32)
  for k in range(MAX_OBJECTS):
    ok = (tries[:, k] < lo[:, None]) | (tries[:, k] > hi[:, None])
    for j in range(k):
      ok &= ~on[:, j, None] | (np.abs(tries[:, k] - x[:, j, None]) > 2 * OBJECT_R + 0.01)
    found = ok.any(axis=1) & (k < wanted)
    x[:, k] = tries[np.arange(n), k, np.argmax(ok, axis=1)]
    on[:, k] = found
  sc["object_on"] = on
  sc["object_shape"] = shapes.astype(np.int32)
  sc["object_color"] = rng.integers(0, len(OBJECT_COLORS), (n, MAX_OBJECTS)).astype(np.int32)
  sc["object_x"] = x
  drop = rng.uniform(-0.05, 0.0, (n, MAX_OBJECTS))
  sc["object_y"] = (sc["feet"][:, :1] + drop - OBJECT_R).astype(np.float32)


def _direction(angle_deg, outward):
  """Unit vector of an outward angle: (outward · sin θ, cos θ), y pointing down."""
  th = np.deg2rad(angle_deg)
  return np.stack([outward * np.sin(th), np.cos(th)], axis=-1)


def _two_link(s, target, l1, l2, outward):
  """Elbow and hand of an arm of lengths l1, l2 from shoulder `s` reaching for `target`.

  The hand stops short when the target is out of reach; of the two elbows the one further out
  and down (larger outward · x + y) is taken. Shapes: points [..., 2], lengths and outward [...].
  """
  d_vec = target - s
  dist = np.maximum(np.linalg.norm(d_vec, axis=-1), 1e-9)
  u = d_vec / dist[..., None]
  d = np.clip(dist, np.abs(l1 - l2) * 1.01 + 1e-6, (l1 + l2) * 0.999)
  a = np.arccos(np.clip((l1**2 + d**2 - l2**2) / (2 * l1 * d), -1.0, 1.0))
  c, sn = np.cos(a), np.sin(a)
  elbows = [
    s
    + l1[..., None]
    * np.stack([u[..., 0] * c - k * u[..., 1] * sn, k * u[..., 0] * sn + u[..., 1] * c], -1)
    for k in (-1.0, 1.0)
  ]
  score = [outward * e[..., 0] + e[..., 1] for e in elbows]
  elbow = np.where((score[1] > score[0])[..., None], elbows[1], elbows[0])
  return elbow, s + u * d[..., None]


def skeleton(sc: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The people's joints at the phases of ``sc["phase"]`` (normalised image coordinates).

  Returns [n, 3, ...] arrays: ``head`` [.., 2] (centre), ``head_r``, ``tilt`` (radians),
  ``top`` (the figure's top, body offset included), ``shoulder``, ``elbow``, ``hand``, ``hip``,
  ``knee``, ``foot`` [.., 2 sides, 2] (side 0 on the image's left), and ``clasp`` [n, 2] (where
  the joined hands meet; meaningful where ``sc["clasp"]``). The main person's holding arm and
  the two joined arms reach for their targets instead of following the pose.
  """
  n = sc["count"].shape[0]
  h, cx, mirror = sc["height"], sc["cx"], sc["mirror"]
  pose = POSES[sc["action"]]  # [n, 3, 12, 3]
  wave = pose[..., 0] + pose[..., 1] * np.sin(sc["phase"][..., None] + pose[..., 2])
  top = sc["feet"] - h + wave[..., 8] * h

  def pt(dx, dy):
    return np.stack([cx + dx * h, top + dy * h], axis=-1)

  sides = np.array([-1.0, 1.0], np.float32)
  out = {"top": top, "head_r": HEAD_R * h, "tilt": np.deg2rad(wave[..., 11]) * mirror}
  out["head"] = pt(wave[..., 9] * mirror, HEAD_Y + wave[..., 10])
  limbs = {}
  for name, (dx, dy, col, l1, l2) in {
    "arm": (SHOULDER_DX, SHOULDER_Y, 0, UPPER_ARM, FOREARM),
    "leg": (HIP_DX, HIP_Y, 4, THIGH, SHIN),
  }.items():
    joints = [[], [], []]
    for s in sides:
      # The figure's left limbs (pose columns col, col+1) are on the image side -mirror.
      first = np.where(s * mirror > 0, col + 2, col)
      a1 = np.take_along_axis(wave, first[..., None], axis=-1)[..., 0]
      a2 = np.take_along_axis(wave, first[..., None] + 1, axis=-1)[..., 0]
      root = pt(np.full_like(h, s * dx), np.full_like(h, dy))
      mid = root + _direction(a1, s) * (l1 * h)[..., None]
      joints[0].append(root)
      joints[1].append(mid)
      joints[2].append(mid + _direction(a2, s) * (l2 * h)[..., None])
    limbs[name] = [np.stack(j, axis=2) for j in joints]  # [n, 3, 2 sides, 2]
  out["shoulder"], out["elbow"], out["hand"] = limbs["arm"]
  out["hip"], out["knee"], out["foot"] = limbs["leg"]
  # Arms that reach for a target: the main person's holding arm and the two joined arms.
  target = np.zeros((n, MAX_PEOPLE, 2, 2), np.float32)
  reach = np.zeros((n, MAX_PEOPLE, 2), bool)
  rows = np.arange(n)
  held_i = (sc["held_side"] > 0).astype(int)
  head, r0, hs, h0 = out["head"][:, 0], out["head_r"][:, 0], sc["held_side"], h[:, 0]
  body = np.stack([cx[:, 0], top[:, 0]], -1)
  held = sc["held"]
  goals = {
    PHONE: head + np.stack([hs * (r0 + 0.06 * h0), 0.05 * h0], -1),
    CUP: head + np.stack([hs * (r0 + 0.08 * h0), 0.8 * r0], -1),
    BOOK: body + np.stack([hs * 0.17 * h0, 0.47 * h0], -1),
    BAG: body + np.stack([hs * 0.16 * h0, 0.47 * h0], -1),
  }
  for kind, goal in goals.items():
    m = held == kind
    target[rows[m], 0, held_i[m]] = goal[m]
    reach[rows[m], 0, held_i[m]] = True
  partner = np.maximum(sc["partner"], 0)
  ci = (sc["clasp_side"] > 0).astype(int)
  sm = out["shoulder"][rows, 0, ci]
  sp = out["shoulder"][rows, partner, 1 - ci]
  y, ha, hb = _reach(sm[:, 1], sp[:, 1], h0, h[rows, partner])
  clasp = np.stack([sm[:, 0] + (sp[:, 0] - sm[:, 0]) * ha / (ha + hb), y], -1)
  m = sc["clasp"]
  for slot, arm in ((np.zeros(n, int), ci), (partner, 1 - ci)):
    target[rows[m], slot[m], arm[m]] = clasp[m]
    reach[rows[m], slot[m], arm[m]] = True
  lengths = np.broadcast_to(h[..., None], reach.shape)
  elbow, hand = _two_link(
    out["shoulder"], target, UPPER_ARM * lengths, FOREARM * lengths, sides[None, None]
  )
  out["elbow"] = np.where(reach[..., None], elbow, out["elbow"]).astype(np.float32)
  out["hand"] = np.where(reach[..., None], hand, out["hand"]).astype(np.float32)
  out["clasp"] = clasp.astype(np.float32)
  return out


def _joints(sk: dict[str, np.ndarray]) -> list[np.ndarray]:
  """The joint arrays of a skeleton as [n, k, 2] (for extents)."""
  n = sk["head"].shape[0]
  names = ("shoulder", "elbow", "hand", "hip", "knee", "foot")
  return [sk["head"][:, :1].reshape(n, -1, 2)] + [sk[k][:, :1].reshape(n, -1, 2) for k in names]
