"""Rasterising v2 scenes (`scenes_v2`): the room, the objects, the people, the light, the noise.

Every shape is painted with an anti-aliased signed distance, coverage = clip(0.5 − sdf, 0, 1)
with sdf in pixels, and pixel ← pixel + coverage · (colour − pixel). People stand anywhere, so
each shape is evaluated in a window of its own per image (one window size for the batch, placed
at each image's shape), and the bounding box of every shape a person paints is kept: the union
is the person's box, that of the head and its features the face box (`render`'s regions).

The people are painted back to front (``sc["depth"]``), the objects just before the main person,
each person from the back layer to the front one: long hair, legs, torso, bare shoulders, badge,
neck, head and face, headwear, arms, the held object, hands.
"""

from __future__ import annotations

import numpy as np

from anonymax.data import scenes_v2 as sv

# The parts of a person (`render(parts=...)` leaves the others out); the face box bounds "head"
# (skin disc and hair cap) and "face" (eyes, mouth, nose).
PARTS = (
  "hair", "legs", "torso", "shoulders", "badge", "neck", "head", "face", "headwear", "arms",
  "held", "hands",
)  # fmt: skip
FACE_PARTS = ("head", "face")

# Palettes (RGB, 0-255); the colours that questions name follow their names' order.
_SKIN = np.array(
  [[255, 224, 196], [241, 194, 160], [224, 172, 130], [176, 120, 82], [130, 86, 56], [92, 58, 38]],
  np.float32,
)
_SHIRTS = np.array(
  [[200, 35, 35], [35, 160, 60], [40, 80, 210], [235, 205, 35], [130, 50, 170]], np.float32
)
_SLEEVES = np.array([[45, 45, 50], [70, 70, 78], [30, 45, 85], [40, 70, 45]], np.float32)
_TROUSERS = np.array([[30, 40, 100], [30, 30, 35], [25, 70, 40], [60, 60, 68]], np.float32)
_HAIR = np.array([[80, 50, 25], [120, 75, 35], [200, 170, 90], [160, 70, 30]], np.float32)
# Colours of the held objects and the headwear are theirs alone (a phone is cyan, a cup mint, a
# book magenta, a bag orange, a hat pink, a cap lime), so what is held or worn shows.
_HATS = np.array([[250, 150, 190], [240, 130, 175]], np.float32)
_CAPS = np.array([[150, 215, 30], [135, 200, 25]], np.float32)
_BOOKS = np.array([[215, 45, 150], [235, 60, 170], [190, 30, 130]], np.float32)
_CUPS = np.array([[110, 235, 170], [95, 220, 160], [125, 240, 180]], np.float32)
_BAGS = np.array([[245, 120, 10], [235, 105, 5], [250, 135, 20]], np.float32)
_OBJECTS = np.array([[220, 40, 40], [40, 180, 60], [40, 90, 220], [235, 210, 40]], np.float32)
# Walls and floors are mid tones: dark limbs and light or saturated things stand out on both.
_WALLS = np.array(
  [[185, 175, 160], [160, 172, 185], [170, 185, 165], [190, 170, 175], [170, 170, 175],
   [190, 182, 145]], np.float32,
)  # fmt: skip
_FLOORS = np.array(
  [[150, 118, 85], [160, 150, 135], [130, 130, 135], [170, 135, 95], [140, 150, 140]], np.float32
)
_EYE, _MOUTH = np.array([20, 20, 20], np.float32), np.array([150, 40, 50], np.float32)
_PHONE = np.array([70, 215, 250], np.float32)
_PAGES = np.array([245, 240, 225], np.float32)
_BADGE, _PHOTO = np.array([240, 240, 232], np.float32), np.array([105, 95, 120], np.float32)
_STRAP = np.array([40, 40, 60], np.float32)
_BANDS = np.array([[30, 40, 110], [150, 30, 40]], np.float32)  # the badge's coloured strip
assert len(_SHIRTS) == len(sv.SHIRT_COLORS) and len(_OBJECTS) == len(sv.OBJECT_COLORS)
assert len(_SKIN) == sv.NUM_SKIN_TONES


class _Canvas:
  """A batch of float32 RGB images painted with anti-aliased signed-distance shapes.

  While ``slot`` (int [n]) is set, the bounds of what is painted grow that slot's boxes
  (``person`` and, for `FACE_PARTS`, ``face``; rows ymin, xmin, ymax, xmax).
  """

  def __init__(self, img: np.ndarray, parts):
    self.img = img  # float32 [n, S, S, 3], 0-255
    self.size = img.shape[1]
    self.parts = frozenset(parts)
    self.slot = None
    n = img.shape[0]
    empty = np.array([np.inf, np.inf, -np.inf, -np.inf], np.float32)
    self.boxes = {k: np.tile(empty, (n, sv.MAX_PEOPLE, 1)) for k in ("person", "face")}

  def paint(self, sdf_fn, lo, hi, color, on, part=None):
    """Blends `color` [n, 3] where sdf_fn < 0, for the images where `on` (bool [n]) holds.

    sdf_fn(px, py, sel) gives normalised distances [k, h, w] for the images `sel` at pixel
    centres px [k, 1, w], py [k, h, 1]; lo/hi [n, 2] bound the shape (normalised x, y).
    """
    if part is not None and part not in self.parts:
      return
    sel = np.flatnonzero(np.asarray(on, bool))
    if not sel.size:
      return
    s = self.size
    lo, hi = lo[sel], hi[sel]
    if self.slot is not None:
      for key in ("person", "face") if part in FACE_PARTS else ("person",):
        box = self.boxes[key][sel, self.slot[sel]]
        box[:, :2] = np.minimum(box[:, :2], lo[:, ::-1])
        box[:, 2:] = np.maximum(box[:, 2:], hi[:, ::-1])
        self.boxes[key][sel, self.slot[sel]] = box
    start = np.floor(lo * s).astype(np.int64) - 1
    stop = np.ceil(hi * s).astype(np.int64) + 2
    w, h = (int(min(s, v)) for v in (stop - start).max(axis=0))
    # A window that leaves the image is moved inside: it still holds the shape's visible part.
    start = np.clip(start, 0, [s - w, s - h])
    xs = start[:, :1] + np.arange(w)  # [k, w]
    ys = start[:, 1:] + np.arange(h)  # [k, h]
    px, py = ((xs + 0.5) / s)[:, None, :], ((ys + 0.5) / s)[:, :, None]
    alpha = np.clip(0.5 - sdf_fn(px, py, sel) * s, 0.0, 1.0)[..., None]
    index = (sel[:, None, None], ys[:, :, None], xs[:, None, :])
    region = self.img[index]
    self.img[index] = region + alpha * (np.asarray(color, np.float32)[sel][:, None, None] - region)

  def disc(self, c, r, color, on, part=None, cut=None):
    """A disc of centre c [n, 2] and radius r [n]; `cut(px, py, sel)` intersects it."""
    r = np.broadcast_to(np.asarray(r, np.float32), c.shape[:1])

    def sdf(px, py, sel):
      d = np.hypot(px - c[sel, 0, None, None], py - c[sel, 1, None, None]) - r[sel, None, None]
      return d if cut is None else np.maximum(d, cut(px, py, sel))

    self.paint(sdf, c - r[:, None], c + r[:, None], color, on, part)

  def capsule(self, a, b, r, color, on, part=None):
    """A segment a→b ([n, 2] each) thickened by radius r [n]."""
    r = np.broadcast_to(np.asarray(r, np.float32), a.shape[:1])
    ab = b - a
    inv = 1.0 / np.maximum(np.sum(ab * ab, axis=1), 1e-12)

    def sdf(px, py, sel):
      ax, ay = a[sel, 0, None, None], a[sel, 1, None, None]
      bx, by = ab[sel, 0, None, None], ab[sel, 1, None, None]
      t = np.clip(((px - ax) * bx + (py - ay) * by) * inv[sel, None, None], 0.0, 1.0)
      return np.hypot(px - ax - bx * t, py - ay - by * t) - r[sel, None, None]

    lo = np.minimum(a, b) - r[:, None]
    self.paint(sdf, lo, np.maximum(a, b) + r[:, None], color, on, part)

  def rect(self, c, half, color, on, part=None):
    """An axis-aligned rectangle of centre c [n, 2] and half extents half [n, 2]."""

    def sdf(px, py, sel):
      dx = np.abs(px - c[sel, 0, None, None]) - half[sel, 0, None, None]
      return np.maximum(dx, np.abs(py - c[sel, 1, None, None]) - half[sel, 1, None, None])

    self.paint(sdf, c - half, c + half, color, on, part)

  def polygon(self, verts, color, on, part=None):
    """A convex polygon with vertices verts [n, k, 2] (either orientation)."""
    centre = verts.mean(axis=1, keepdims=True)
    edge = np.roll(verts, -1, axis=1) - verts
    normal = np.stack([edge[..., 1], -edge[..., 0]], axis=-1)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    # Point every normal away from the centre so the sdf is positive outside.
    sign = np.sign(np.sum((verts - centre) * normal, axis=-1, keepdims=True))
    normal *= np.where(sign == 0, 1.0, sign)

    def sdf(px, py, sel):
      v, nm = verts[sel, :, None, None], normal[sel, :, None, None]
      d = (px[:, None] - v[..., 0]) * nm[..., 0] + (py[:, None] - v[..., 1]) * nm[..., 1]
      return d.max(axis=1)

    self.paint(sdf, verts.min(axis=1), verts.max(axis=1), color, on, part)


def _xy(x, y):
  return np.stack([x, y], axis=-1).astype(np.float32)


def _background(sc, size: int) -> np.ndarray:
  """The wall above the horizon and the floor below, each with its texture: float32 [n, S, S, 3].

  Wall textures: plain, waves (10 · sin 2π(f_x x + f_y y + φ)), vertical stripes, brick lines;
  floor textures: plain, planks, a checkerboard.
  """
  t = sc["texture"]
  u = (np.arange(size, dtype=np.float32) + 0.5) / size
  x, y = u[None, None, :], u[None, :, None]
  fx, fy, ph = (0.5 + 1.5 * t[:, 0]), (0.5 + 1.5 * t[:, 1]), t[:, 2]
  fx, fy, ph = fx[:, None, None], fy[:, None, None], ph[:, None, None]
  stripes = 4 + 8 * t[:, 3, None, None]
  wall = [
    np.zeros_like(x * y),
    7.0 * np.sin(2 * np.pi * (fx * x + fy * y + ph)),
    5.0 * np.sin(2 * np.pi * stripes * x + 6 * ph) + 0 * y,
    -9.0 * (np.cos(2 * np.pi * (y / 0.08 + ph)) > 0.85) + 0 * x,
  ]
  floor = [
    np.zeros_like(x * y),
    -8.0 * (np.cos(2 * np.pi * ((y - sc["horizon"][:, None, None]) / 0.05)) > 0.8) + 0 * x,
    6.0 * np.sign(np.sin(2 * np.pi * stripes * x) * np.sin(2 * np.pi * stripes * y + ph)),
  ]
  wall_tex = np.choose(
    sc["wall_texture"][:, None, None], [np.broadcast_to(w, (len(t), size, size)) for w in wall]
  )
  floor_tex = np.choose(
    sc["floor_texture"][:, None, None], [np.broadcast_to(f, (len(t), size, size)) for f in floor]
  )
  below = (y >= sc["horizon"][:, None, None])[..., None]
  img = np.where(
    below,
    _FLOORS[sc["floor"]][:, None, None] + floor_tex[..., None],
    _WALLS[sc["wall"]][:, None, None] + wall_tex[..., None],
  )
  return img.astype(np.float32)


def _lighting(sc, size: int) -> np.ndarray:
  """The light's gain per pixel [n, S, S, 1]: gain · (1 + slope · (2u − 1)), u = x or y."""
  u = (np.arange(size, dtype=np.float32) + 0.5) / size
  ramp = 1 + sc["light_slope"][:, None] * (2 * u[None] - 1)  # [n, S]
  across = np.where((sc["light_axis"] == 0)[:, None, None], ramp[:, None, :], ramp[:, :, None])
  return (sc["gain"][:, None, None] * across)[..., None].astype(np.float32)


def _objects(cv: _Canvas, sc) -> None:
  """The floor objects, each shape with a mark of its own besides its outline: a ball (a disc
  with a highlight), a box (a wide block with a dark rim) or a cone (a tall triangle with a white
  band)."""
  n = sc["count"].shape[0]
  r = np.full(n, sv.OBJECT_R, np.float32)
  white, rim = np.tile(_PAGES, (n, 1)), np.tile(_STRAP, (n, 1))
  for k in range(sv.MAX_OBJECTS):
    c = _xy(sc["object_x"][:, k], sc["object_y"][:, k])
    rgb = _OBJECTS[sc["object_color"][:, k]]
    shape, on = sc["object_shape"][:, k], sc["object_on"][:, k]
    ball, box, cone = (on & (shape == i) for i in range(3))
    cv.disc(c, r, rgb, ball)
    cv.disc(c + _xy(-0.3 * r, -0.3 * r), 0.35 * r, white, ball)
    cv.rect(c + _xy(0 * r, 0.2 * r), _xy(1.05 * r, 0.8 * r), rim, box)
    cv.rect(c + _xy(0 * r, 0.2 * r), _xy(0.72 * r, 0.48 * r), rgb, box)
    tri = np.stack([c + _xy(0 * r, -1.4 * r), c + _xy(0.75 * r, r), c + _xy(-0.75 * r, r)], 1)
    cv.polygon(tri, rgb, cone)
    cv.rect(c + _xy(0 * r, 0.05 * r), _xy(0.38 * r, 0.2 * r), white, cone)


def _person(cv: _Canvas, p: dict, on: np.ndarray) -> None:
  """Paints one person per image from `p`: their skeleton and scene fields, gathered per image."""
  h, r, head, n = p["height"], p["head_r"], p["head"], on.shape[0]
  skin, hair = _SKIN[p["skin_tone"]], _HAIR[p["hair_color"]]
  zero = np.zeros(n, np.float32)

  def body(dx, dy):  # a point of the body frame, in units of H
    return _xy(p["cx"] + dx * h, p["top"] + dy * h)

  def face_pt(a, b):  # a point of the head frame (rotated by the tilt), in units of R
    c, s = np.cos(p["tilt"]), np.sin(p["tilt"])
    return _xy(head[:, 0] + (a * c - b * s) * r, head[:, 1] + (a * s + b * c) * r)

  for s in (-1.0, 1.0):  # long hair falls behind the shoulders
    a, b = head + _xy(s * 0.8 * r, -0.3 * r), head + _xy(s * 0.95 * r, 1.9 * r)
    cv.capsule(a, b, 0.4 * r, hair, on & p["long_hair"], "hair")
  trousers = _TROUSERS[p["trousers"]]
  for i in range(2):
    cv.capsule(p["hip"][:, i], p["knee"][:, i], sv.LEG_R * h, trousers, on, "legs")
    cv.capsule(p["knee"][:, i], p["foot"][:, i], sv.LEG_R * h, trousers, on, "legs")
  sx, hx = sv.SHOULDER_DX + 0.01, sv.HIP_DX + 0.012
  corners = [(-sx, sv.SHOULDER_Y - 0.012), (sx, sv.SHOULDER_Y - 0.012), (hx, sv.HIP_Y + 0.008)]
  torso = np.stack([body(zero + dx, dy) for dx, dy in corners + [(-hx, sv.HIP_Y + 0.008)]], 1)
  cv.polygon(torso, _SHIRTS[p["shirt"]], on, "torso")
  frac = (sv.CHEST_Y - sv.SHOULDER_Y + 0.012) / (sv.HIP_Y - sv.SHOULDER_Y + 0.02)
  cx_ = sx + frac * (hx - sx)
  upper = [(-sx, sv.SHOULDER_Y - 0.012), (sx, sv.SHOULDER_Y - 0.012)]
  upper += [(cx_, sv.CHEST_Y), (-cx_, sv.CHEST_Y)]
  cv.polygon(
    np.stack([body(zero + dx, dy) for dx, dy in upper], 1), skin, on & p["bare"], "shoulders"
  )
  badge = on & p["badge"]
  bc = body(0.045 * p["badge_side"], 0.40)
  for s in (-1.0, 1.0):
    a = body(zero + s * 0.035, sv.SHOULDER_Y - 0.005)
    cv.capsule(
      a, bc + _xy(s * 0.04 * h, -0.07 * h), 0.008 * h, np.tile(_STRAP, (n, 1)), badge, "badge"
    )
  cv.rect(bc, _xy(0.055 * h, 0.07 * h), np.tile(_BADGE, (n, 1)), badge, "badge")
  cv.rect(
    bc + _xy(zero, -0.022 * h), _xy(0.03 * h, 0.03 * h), np.tile(_PHOTO, (n, 1)), badge, "badge"
  )
  cv.rect(
    bc + _xy(zero, 0.048 * h), _xy(0.05 * h, 0.013 * h), _BANDS[p["hat_color"] % 2], badge, "badge"
  )
  cv.capsule(head + _xy(zero, 0.6 * r), body(zero, sv.SHOULDER_Y), 0.3 * r, skin, on, "neck")
  _head(cv, p, on, skin, hair, face_pt)
  sleeves = _SLEEVES[p["sleeves"]]
  for i in range(2):
    cv.capsule(p["shoulder"][:, i], p["elbow"][:, i], sv.ARM_R * h, sleeves, on, "arms")
    cv.capsule(p["elbow"][:, i], p["hand"][:, i], sv.ARM_R * h, sleeves, on, "arms")
  _held(cv, p, on)
  for i in range(2):
    cv.disc(p["hand"][:, i], sv.HAND_R * h, skin, on, "hands")


def _head(cv: _Canvas, p, on, skin, hair, face_pt) -> None:
  """The head: skin disc, hair cap, the face's features, the headwear."""
  n, r, head, face = on.shape[0], p["head_r"], p["head"], p["face"]
  cv.disc(head, r, skin, on, "head")
  c, s = np.cos(p["tilt"]), np.sin(p["tilt"])
  # Hair cap over the top of the head; turned away it covers the face down to the chin, in
  # profile also the turned-away half.
  cover = np.where(face == sv.FACE_BACK, 0.55, -0.25).astype(np.float32) * r
  partial, side = face == sv.FACE_PARTIAL, p["face_side"]

  def hair_cut(px, py, sel):
    dx, dy = px - head[sel, 0, None, None], py - head[sel, 1, None, None]
    ct, st = c[sel, None, None], s[sel, None, None]
    down = -dx * st + dy * ct  # the head frame's y
    across = dx * ct + dy * st
    above = down - cover[sel, None, None]
    turned = np.where(
      partial[sel, None, None], -side[sel, None, None] * across + 0.15 * r[sel, None, None], np.inf
    )
    return np.minimum(above, turned)

  cv.disc(head, 1.08 * r, hair, on, "head", cut=hair_cut)
  full, half = on & (face == sv.FACE_COMPLETE), on & partial
  eye_r = np.maximum(0.17 * r, 0.75 / cv.size)
  mouth_r = np.maximum(0.11 * r, 0.5 / cv.size)
  eye, mouth = np.tile(_EYE, (n, 1)), np.tile(_MOUTH, (n, 1))
  for e in (-0.38, 0.38):
    cv.disc(face_pt(e, -0.1), eye_r, eye, full, "face")
  cv.capsule(face_pt(-0.35, 0.45), face_pt(0.35, 0.45), mouth_r, mouth, full, "face")
  cv.disc(face_pt(side * 0.42, -0.1), eye_r, eye, half, "face")
  cv.capsule(face_pt(side * 0.15, 0.45), face_pt(side * 0.6, 0.45), mouth_r, mouth, half, "face")
  cv.disc(face_pt(side * 1.0, 0.1), 0.18 * r, skin, half, "face")  # the nose, in profile
  hat, cap = _HATS[p["hat_color"] % 2], _CAPS[p["hat_color"] % 2]
  wear = p["headwear"]
  on_hat, on_cap = on & (wear == sv.HAT), on & (wear == sv.CAP)
  # A hat: a wide brim and a tall crown; a cap: a dome on the head and a visor to one side.
  brim = head[:, 1] - 0.6 * r
  a, b = _xy(head[:, 0] - 1.75 * r, brim), _xy(head[:, 0] + 1.75 * r, brim)
  cv.capsule(a, b, 0.2 * r, hat, on_hat, "headwear")
  cv.rect(head + _xy(0 * r, -1.15 * r), _xy(0.9 * r, 0.6 * r), hat, on_hat, "headwear")

  def dome(px, py, sel):
    return py - head[sel, 1, None, None] + 0.1 * r[sel, None, None]

  cv.disc(head, 1.15 * r, cap, on_cap, "headwear", cut=dome)
  visor = head[:, 1] - 0.2 * r
  a, b = _xy(head[:, 0] + side * 0.2 * r, visor), _xy(head[:, 0] + side * 1.9 * r, visor)
  cv.capsule(a, b, 0.2 * r, cap, on_cap, "headwear")


def _held(cv: _Canvas, p, on) -> None:
  """The main person's object, at the hand of their holding arm."""
  n, h, r = on.shape[0], p["height"], p["head_r"]
  kind, s = p["held"], p["held_side"]
  hand = p["hand"][np.arange(n), (s > 0).astype(int)]
  color = p["held_color"]
  zero = np.zeros(n, np.float32)
  phone = on & (kind == sv.PHONE)
  pc = p["head"] + _xy(s * (r + 0.06 * h), zero)
  cv.rect(pc, _xy(0.06 * h, 0.1 * h), np.tile(_PHONE, (n, 1)), phone, "held")
  cup = on & (kind == sv.CUP)
  rim = hand + _xy(zero, -0.12 * h)
  cv.rect(hand + _xy(zero, -0.03 * h), _xy(0.075 * h, 0.09 * h), _CUPS[color], cup, "held")
  strap = np.tile(_STRAP, (n, 1))
  cv.capsule(rim - _xy(0.075 * h, zero), rim + _xy(0.075 * h, zero), 0.012 * h, strap, cup, "held")
  book = on & (kind == sv.BOOK)
  bc = hand + _xy(s * 0.045 * h, 0.08 * h)
  cv.rect(bc, _xy(0.075 * h, 0.1 * h), _BOOKS[color], book, "held")
  pages = np.tile(_PAGES, (n, 1))
  cv.rect(bc + _xy(s * 0.06 * h, zero), _xy(0.015 * h, 0.092 * h), pages, book, "held")
  bag = on & (kind == sv.BAG)
  ty, by = hand[:, 1] + 0.06 * h, hand[:, 1] + 0.24 * h
  for d in (-1.0, 1.0):
    end = _xy(hand[:, 0] + d * 0.065 * h, ty)
    cv.capsule(hand, end, 0.012 * h, _BAGS[(color + 1) % 3], bag, "held")
  x0 = hand[:, 0]
  verts = [(x0 - 0.085 * h, ty), (x0 + 0.085 * h, ty), (x0 + 0.115 * h, by), (x0 - 0.115 * h, by)]
  cv.polygon(np.stack([_xy(a, b) for a, b in verts], 1), _BAGS[color], bag, "held")


_PERSON_FIELDS = (
  "height", "cx", "skin_tone", "hair_color", "long_hair", "trousers", "shirt", "bare", "badge",
  "badge_side", "hat_color", "headwear", "face", "face_side", "sleeves",
)  # fmt: skip
_MAIN_FIELDS = ("held", "held_side", "held_color")


def render(sc, size: int, noise_rng: np.random.Generator, *, people=None, parts=PARTS):
  """Rasterises scenes (one frame each, at the phases in ``sc["phase"]``).

  Args:
    sc: scene arrays from `scenes_v2.sample_scenes` (possibly repeated per frame).
    size: image side S in pixels.
    noise_rng: generator of the per-pixel sensor noise (uniform, ±6 grey levels).
    people: bool [n, 3], which people to draw (default: all present); the others are left out
      as if they were not there (the rest of the scene stays as it is).
    parts: which of `PARTS` to draw.

  Returns:
    (uint8 [n, S, S, 3], regions): regions ``"face"`` and ``"person"`` float32 [n, 3, 4] boxes
    (ymin, xmin, ymax, xmax in [0, 1], bounding what each person's face and whole figure paint;
    zeros for absent people) and ``"valid"`` bool [n, 3] (the person is in the scene).
  """
  n = sc["count"].shape[0]
  sk = sv.skeleton(sc)
  cv = _Canvas(_background(sc, size), parts)
  draw = sc["valid"] if people is None else np.asarray(people, bool) & sc["valid"]
  rows = np.arange(n)
  for d in range(sv.MAX_PEOPLE):
    slot = sc["depth"][:, d]
    if d == sv.MAX_PEOPLE - 1:
      _objects(cv, sc)  # in front of the others, behind the main person (who stays clear)
    p = {k: v[rows, slot] for k, v in sk.items() if k != "clasp"}
    p.update({k: sc[k][rows, slot] for k in _PERSON_FIELDS})
    main = slot == 0
    p.update({k: sc[k] for k in _MAIN_FIELDS})
    p["held"] = np.where(main, sc["held"], sv.NOTHING)
    cv.slot = slot
    _person(cv, p, draw[rows, slot])
    cv.slot = None
  img = cv.img * _lighting(sc, size)
  img += noise_rng.integers(-6, 7, (n, size, size, 1), dtype=np.int8)
  img += 0.5  # round half up: the cast below truncates
  np.clip(img, 0, 255, out=img)
  regions = {}
  for key, box in cv.boxes.items():
    drawn = np.isfinite(box[..., 0])
    regions[key] = np.where(drawn[..., None], np.clip(box, 0.0, 1.0), 0.0).astype(np.float32)
  regions["valid"] = sc["valid"].copy()
  return img.astype(np.uint8), regions
