"""Procedural scenes of the synthetic benchmark: sampling scene parameters and rasterising them.

A scene is a person (a limb figure) standing in the middle of a textured room, a column of
objects on one side, and on the other side possibly a small document/card pinned to the wall and a
smaller companion. The layout (normalised coordinates, x right, y down, the image is [0, 1]²)::

    card / companion column     person                  objects column
    x ∈ [0.03, 0.23]            x ∈ [0.19, 0.81]        x ∈ [0.77, 0.97]   (or mirrored)

Utility content: the limb angles of the person (the action, animated over a clip's frames) and
the objects (count, shapes, colours). Privacy content: the face (eyes and mouth, complete or
turned away), the skin tone (head, neck and a bare torso), the hair (long strands beside the
head), the bare torso (exposed-skin area), the card and the companion. Limbs and objects never
carry privacy information: sleeves and trousers take clothing colours, so an anonymizer can
remove every attribute and leave the pose and the objects intact, whereas blurring or blackening
the person destroys the limbs.

Every shape is painted with an anti-aliased signed distance: coverage = clip(0.5 − sdf, 0, 1),
sdf in pixels, and pixel ← pixel + coverage · (colour − pixel). Shapes are evaluated only inside
the bounding box that holds them across the batch, which keeps `render` to a few milliseconds
per hundred images.
"""

from __future__ import annotations

import numpy as np

ACTIONS = ("standing", "waving", "jumping", "walking", "sitting", "kicking", "stretching")
SHAPES = ("ball", "box", "cone")
OBJECT_COLORS = ("red", "green", "blue", "yellow")
MAX_OBJECTS = 3
NUM_SKIN_TONES = 6  # tones 0-2 are lighter, 3-5 darker (the a17_color attribute)
FACE_HIDDEN, FACE_COMPLETE, FACE_PARTIAL = 0, 1, 2

# Palettes (RGB, 0-255).
_SKIN = np.array(
  [[255, 224, 196], [241, 194, 160], [224, 172, 130], [176, 120, 82], [130, 86, 56], [92, 58, 38]],
  np.float32,
)
_CLOTHES = np.array(
  [[40, 60, 160], [150, 30, 40], [30, 110, 60], [110, 50, 140], [30, 130, 140], [60, 60, 60]],
  np.float32,
)
_HAIR = np.array([[30, 25, 20], [90, 60, 30], [200, 170, 90], [140, 60, 30]], np.float32)
_OBJECT_RGB = np.array([[220, 40, 40], [40, 180, 60], [40, 90, 220], [235, 210, 40]], np.float32)
_WALLS = np.array([[200, 190, 170], [170, 185, 200], [185, 200, 175], [205, 185, 190]], np.float32)
_CARDS = np.array([[240, 240, 225], [215, 230, 245]], np.float32)
_EYE = np.array([20, 20, 20], np.float32)
_MOUTH = np.array([150, 40, 50], np.float32)

# Layout of the person (normalised units, relative to the figure's top `FIGURE_TOP` and centre cx).
FIGURE_TOP = 0.12
HEAD_Y, HEAD_R = 0.115, 0.075
SHOULDER_Y, SHOULDER_DX = 0.215, 0.065
HIP_Y, HIP_DX = 0.45, 0.04
UPPER_ARM, LOWER_ARM, THIGH, SHIN = 0.095, 0.085, 0.13, 0.12
ARM_R, LEG_R = 0.022, 0.026
SIDE_X = 0.37  # side columns are centred at 0.5 ± SIDE_X
CARD_Y, CARD_W, CARD_H = 0.13, 0.19, 0.13
OBJECT_SLOTS_Y = (0.30, 0.50, 0.70)
OBJECT_R = 0.055
COMPANION_SCALE, COMPANION_TOP = 0.55, 0.435
FLOOR_Y = 0.84

# Pose table: for every action and every limb segment, the outward angle in degrees
# (0 = hanging down, 90 = horizontal away from the body, 180 = straight up) is
# base + amplitude · sin(phase + shift). Segment order: left upper arm, left forearm, right upper
# arm, right forearm, left thigh, left shin, right thigh, right shin; the last row is the vertical
# body offset (normalised units) with the same parametrisation.
_PI = np.pi
# fmt: off
_POSES = np.array([
    # arms: L upper, L fore, R upper, R fore | legs: L thigh, L shin, R thigh, R shin | body dy
    # standing: arms hang, slight sway
    [[10, 3, 0], [5, 3, 0], [10, 3, _PI], [5, 3, _PI],
     [6, 0, 0], [4, 0, 0], [6, 0, 0], [4, 0, 0], [0, 0, 0]],
    # waving: one arm raised, the forearm swings
    [[12, 0, 0], [6, 0, 0], [135, 8, 0], [160, 30, 0],
     [6, 0, 0], [4, 0, 0], [6, 0, 0], [4, 0, 0], [0, 0, 0]],
    # jumping: arms up in a V, legs apart, the body bounces
    [[135, 10, 0], [150, 15, 0], [135, 10, 0], [150, 15, 0],
     [25, 10, 0], [10, 10, 0], [25, 10, 0], [10, 10, 0], [-0.045, 0.045, 0]],
    # walking: arms and legs swing in opposition
    [[20, 22, 0], [15, 25, 0], [20, 22, _PI], [15, 25, _PI],
     [22, 16, _PI], [8, 20, _PI], [22, 16, 0], [8, 20, 0], [0, 0, 0]],
    # sitting: thighs horizontal, shins down, the body lowered, forearms gesturing
    [[25, 5, 0], [60, 20, 0], [25, 5, _PI], [60, 20, _PI],
     [80, 3, 0], [5, 3, 0], [80, 3, 0], [5, 3, 0], [0.09, 0, 0]],
    # kicking: one leg swings up, arms out for balance
    [[50, 10, 0], [60, 10, 0], [50, 10, 0], [60, 10, 0],
     [6, 0, 0], [4, 0, 0], [55, 20, 0], [70, 20, 0], [0, 0, 0]],
    # stretching: both arms horizontal
    [[90, 6, 0], [90, 10, 0], [90, 6, 0], [90, 10, 0],
     [10, 0, 0], [5, 0, 0], [10, 0, 0], [5, 0, 0], [0, 0, 0]],
], np.float32)
# fmt: on
assert _POSES.shape[0] == len(ACTIONS)


def sample_scenes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
  """Draws n independent scenes.

  Every privacy attribute is drawn independently of the action, of the objects and of the other
  attributes (the face state is one three-way draw: hidden, complete or partial).

  Args:
    rng: numpy generator.
    n: number of scenes.

  Returns:
    A dict of per-scene arrays (leading axis n): the utility fields ``action``, ``phase``,
    ``mirror``, ``cx``, ``num_objects``, ``object_slot`` [n, 3] (bool), ``object_shape`` [n, 3],
    ``object_color`` [n, 3]; the privacy fields ``long_hair``, ``face``, ``bare_torso``,
    ``skin_tone``, ``card``, ``companion``; and nuisance fields (side, colours, texture).
  """
  num_objects = rng.integers(1, MAX_OBJECTS + 1, n)
  # Distinct shapes per scene (a permutation) so "the ball" is always unambiguous.
  shapes = np.argsort(rng.random((n, len(SHAPES))), axis=1)[:, :MAX_OBJECTS]
  slot_order = np.argsort(rng.random((n, len(OBJECT_SLOTS_Y))), axis=1)
  slot_on = np.zeros((n, len(OBJECT_SLOTS_Y)), bool)
  rank = np.argsort(slot_order, axis=1)  # rank[i, s] = position of slot s in the draw order
  slot_on[:] = rank < num_objects[:, None]
  return {
    "action": rng.integers(0, len(ACTIONS), n).astype(np.int32),
    "phase": rng.uniform(0, 2 * np.pi, n).astype(np.float32),
    "mirror": rng.choice(np.array([-1.0, 1.0], np.float32), n),
    "cx": rng.uniform(0.48, 0.52, n).astype(np.float32),
    "num_objects": num_objects.astype(np.int32),
    "object_slot": slot_on,
    # object k occupies slot k when object_slot[:, k]; shape/colour are per slot.
    "object_shape": shapes.astype(np.int32),
    "object_color": rng.integers(0, len(OBJECT_COLORS), (n, MAX_OBJECTS)).astype(np.int32),
    "long_hair": rng.random(n) < 0.5,
    "face": rng.integers(0, 3, n).astype(np.int32),
    "bare_torso": rng.random(n) < 0.5,
    "skin_tone": rng.integers(0, NUM_SKIN_TONES, n).astype(np.int32),
    "card": rng.random(n) < 0.5,
    "companion": rng.random(n) < 0.5,
    "side": rng.choice(np.array([-1.0, 1.0], np.float32), n),
    "hair_color": rng.integers(0, len(_HAIR), n),
    "shirt": rng.integers(0, len(_CLOTHES), n),
    "sleeves": rng.integers(0, len(_CLOTHES), n),
    "trousers": rng.integers(0, len(_CLOTHES), n),
    "companion_shirt": rng.integers(0, len(_CLOTHES), n),
    "card_color": rng.integers(0, len(_CARDS), n),
    "wall": rng.integers(0, len(_WALLS), n),
    "texture": rng.uniform(0, 1, (n, 4)).astype(np.float32),
  }


class _Canvas:
  """A batch of float32 RGB images painted with anti-aliased signed-distance shapes."""

  def __init__(self, img: np.ndarray):
    self.img = img  # float32 [n, S, S, 3], 0-255
    self.size = img.shape[1]

  def paint(self, sdf_fn, lo, hi, color, on=None):
    """Blends `color` where sdf_fn < 0, for the images where `on` (bool [n]) holds.

    sdf_fn(px, py, sel) returns normalised distances [k, h, w] for the images `sel`; lo/hi [n, 2]
    bound the shape (normalised x, y). Only those images and only that box are computed.
    """
    sel = slice(None)
    if on is not None:
      on = np.asarray(on) > 0
      if not on.any():
        return
      if not on.all():
        sel = np.flatnonzero(on)
    s = self.size
    lo, hi = lo[sel], hi[sel]
    x0 = max(0, int(np.floor(np.min(lo[:, 0]) * s)) - 1)
    y0 = max(0, int(np.floor(np.min(lo[:, 1]) * s)) - 1)
    x1 = min(s, int(np.ceil(np.max(hi[:, 0]) * s)) + 2)
    y1 = min(s, int(np.ceil(np.max(hi[:, 1]) * s)) + 2)
    if x1 <= x0 or y1 <= y0:
      return
    # Pixel centres in normalised units.
    px = ((np.arange(x0, x1, dtype=np.float32) + 0.5) / s)[None, None, :]
    py = ((np.arange(y0, y1, dtype=np.float32) + 0.5) / s)[None, :, None]
    alpha = np.clip(0.5 - sdf_fn(px, py, sel) * s, 0.0, 1.0)[..., None]
    color = np.asarray(color, np.float32)[sel][:, None, None, :]
    if isinstance(sel, slice):
      region = self.img[:, y0:y1, x0:x1]
      region += alpha * (color - region)
    else:
      region = self.img[sel, y0:y1, x0:x1]
      self.img[sel, y0:y1, x0:x1] = region + alpha * (color - region)

  def disc(self, c, r, color, on=None, cut=None):
    """A disc of centre c [n, 2] and radius r; `cut(px, py)` intersects it with another sdf."""
    r = np.broadcast_to(np.asarray(r, np.float32), c.shape[:1])

    def sdf(px, py, sel):
      d = np.hypot(px - c[sel, 0, None, None], py - c[sel, 1, None, None]) - r[sel, None, None]
      return d if cut is None else np.maximum(d, cut(px, py, sel))

    self.paint(sdf, c - r[:, None], c + r[:, None], color, on)

  def capsule(self, a, b, r, color, on=None):
    """A segment a→b ([n, 2] each) thickened by radius r."""
    ab = b - a
    inv = 1.0 / np.maximum(np.sum(ab * ab, axis=1), 1e-12)

    def sdf(px, py, sel):
      ax, ay = a[sel, 0, None, None], a[sel, 1, None, None]
      bx, by = ab[sel, 0, None, None], ab[sel, 1, None, None]
      h = np.clip(((px - ax) * bx + (py - ay) * by) * inv[sel, None, None], 0.0, 1.0)
      return np.hypot(px - ax - bx * h, py - ay - by * h) - r

    self.paint(sdf, np.minimum(a, b) - r, np.maximum(a, b) + r, color, on)

  def rect(self, c, half, color, on=None):
    """An axis-aligned rectangle of centre c [n, 2] and half extents `half` (x, y)."""
    hx, hy = half

    def sdf(px, py, sel):
      return np.maximum(
        np.abs(px - c[sel, 0, None, None]) - hx, np.abs(py - c[sel, 1, None, None]) - hy
      )

    self.paint(sdf, c - np.array(half), c + np.array(half), color, on)

  def polygon(self, verts, color, on=None):
    """A convex polygon with vertices verts [n, k, 2] (either orientation)."""
    centre = verts.mean(axis=1, keepdims=True)
    edge = np.roll(verts, -1, axis=1) - verts
    normal = np.stack([edge[..., 1], -edge[..., 0]], axis=-1)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    # Point every normal away from the centre so the sdf is positive outside.
    sign = np.sign(np.sum((verts - centre) * normal, axis=-1, keepdims=True))
    normal *= np.where(sign == 0, 1.0, sign)

    def sdf(px, py, sel):
      d = None
      for k in range(verts.shape[1]):
        dk = (px - verts[sel, k, 0, None, None]) * normal[sel, k, 0, None, None] + (
          py - verts[sel, k, 1, None, None]
        ) * normal[sel, k, 1, None, None]
        d = dk if d is None else np.maximum(d, dk)
      return d

    self.paint(sdf, verts.min(axis=1), verts.max(axis=1), color, on)


def _background(sc: dict[str, np.ndarray], size: int) -> np.ndarray:
  """Wall colour with a low-frequency texture and a darker floor: float32 [n, S, S, 3].

  texture(x, y) = 10 · sin(2π(f_x x + f_y y + φ)), evaluated separably as
  sin(a) cos(b) + cos(a) sin(b) with a = 2π f_x x and b = 2π(f_y y + φ).
  """
  t = sc["texture"]
  u = (np.arange(size, dtype=np.float32) + 0.5) / size
  a = 2 * np.pi * (0.5 + 1.5 * t[:, 0, None]) * u[None, :]  # [n, S] along x
  b = 2 * np.pi * ((0.5 + 1.5 * t[:, 1, None]) * u[None, :] + t[:, 2, None])  # [n, S] along y
  wave = 10.0 * (
    np.sin(a)[:, None, :] * np.cos(b)[:, :, None] + np.cos(a)[:, None, :] * np.sin(b)[:, :, None]
  )
  img = wave.astype(np.float32)[..., None] + _WALLS[sc["wall"]][:, None, None, :]
  img[:, u >= FLOOR_Y] *= 0.8
  return img


def _direction(angle_deg: np.ndarray, outward: np.ndarray) -> np.ndarray:
  """Unit vector of an outward angle: (outward · sin θ, cos θ) with y pointing down."""
  th = np.deg2rad(angle_deg)
  return np.stack([outward * np.sin(th), np.cos(th)], axis=-1)


def _figure(cv, *, top, cx, scale, angles, mirror, groups, face, side, long_hair, bare, rgb, on):
  """Paints one limb figure per image (the person, or the companion at a smaller scale).

  Args:
    cv: the `_Canvas`.
    top, cx: [n] top of the figure and its centre line (normalised).
    scale: size relative to the person.
    angles: [n, 8] outward limb angles (degrees), in `_POSES` segment order.
    mirror: [n] ±1, swaps the figure's left and right limbs.
    groups: bool [n] masks partitioning the images by pose; limbs are painted group by group so
      each limb's bounding box stays tight.
    face: [n] FACE_HIDDEN / FACE_COMPLETE / FACE_PARTIAL; side: [n] ±1, the side a partial face
      turns away to.
    long_hair, bare: bool [n] privacy attributes; rgb: dict of [n, 3] colours (skin, hair,
      shirt, sleeves, trousers); on: bool [n], which images hold this figure at all.
  """
  n = cx.shape[0]
  skin = rgb["skin"]

  def pt(dx, dy):
    return np.stack([cx + dx * scale, top + dy * scale], axis=-1).astype(np.float32)

  zeros = np.zeros(n, np.float32)
  head = pt(zeros, zeros + HEAD_Y)
  r = HEAD_R * scale
  # Long hair falls behind the shoulders: painted first so the arms stay on top of it.
  for s in (-1.0, 1.0):
    cv.capsule(
      pt(zeros + s * 0.8 * HEAD_R, zeros + HEAD_Y - 0.3 * HEAD_R),
      pt(zeros + s * 0.95 * HEAD_R, zeros + HEAD_Y + 1.9 * HEAD_R),
      0.4 * r,
      rgb["hair"],
      on & long_hair,
    )
  torso = np.stack(
    [
      pt(zeros - SHOULDER_DX, zeros + SHOULDER_Y - 0.01),
      pt(zeros + SHOULDER_DX, zeros + SHOULDER_Y - 0.01),
      pt(zeros + HIP_DX + 0.01, zeros + HIP_Y + 0.005),
      pt(zeros - HIP_DX - 0.01, zeros + HIP_Y + 0.005),
    ],
    axis=1,
  )
  cv.polygon(torso, np.where(bare[:, None], skin, rgb["shirt"]), on)
  # Limbs: two segments each, chained from the shoulders and hips.
  joints = [
    (-SHOULDER_DX, SHOULDER_Y, -1.0, (UPPER_ARM, LOWER_ARM), ARM_R, rgb["sleeves"], 0),
    (SHOULDER_DX, SHOULDER_Y, 1.0, (UPPER_ARM, LOWER_ARM), ARM_R, rgb["sleeves"], 2),
    (-HIP_DX, HIP_Y, -1.0, (THIGH, SHIN), LEG_R, rgb["trousers"], 4),
    (HIP_DX, HIP_Y, 1.0, (THIGH, SHIN), LEG_R, rgb["trousers"], 6),
  ]
  for dx, dy, out, lengths, radius, color, k in joints:
    p = pt(zeros + dx * mirror, zeros + dy)
    for j, length in enumerate(lengths):
      q = p + _direction(angles[:, k + j], out * mirror) * (length * scale)
      for group in groups:
        cv.capsule(p, q, radius * scale, color, on & group)
      p = q
  cv.capsule(
    pt(zeros, zeros + HEAD_Y + 0.6 * HEAD_R), pt(zeros, zeros + SHOULDER_Y), 0.3 * r, skin, on
  )
  cv.disc(head, r, skin, on)
  hx, hy = head[:, 0, None, None], head[:, 1, None, None]
  away = -side  # the visible half of a turned face
  side = side[:, None, None]
  # Hair cap: the top of the head; a hidden face (back of the head) is covered down to the chin,
  # a partial face (turned away) is covered on one side as well.
  cover = np.where(face == FACE_HIDDEN, 0.55, -0.25).astype(np.float32)[:, None, None] * r
  partial = (face == FACE_PARTIAL)[:, None, None]

  def hair_cut(px, py, sel):
    # Union of the half-planes "above the hair line" and "on the turned-away side".
    above = py - hy[sel] - cover[sel]
    turned = np.where(partial[sel], side[sel] * (hx[sel] - px) + 0.15 * r, np.inf)
    return np.minimum(above, turned)

  cv.disc(head, 1.08 * r, rgb["hair"], on, cut=hair_cut)
  # Features of a visible face: two eyes and a mouth, or one eye and half a mouth when turned.
  full = on & (face == FACE_COMPLETE)
  half = on & (face == FACE_PARTIAL)
  eye_r = max(0.15 * r, 0.7 / cv.size)
  eye_y = head[:, 1] - 0.1 * r
  mouth_y = head[:, 1] + 0.45 * r
  for s in (-1.0, 1.0):
    cv.disc(np.stack([head[:, 0] + s * 0.38 * r, eye_y], -1), eye_r, _EYE[None].repeat(n, 0), full)
  cv.capsule(
    np.stack([head[:, 0] - 0.35 * r, mouth_y], -1),
    np.stack([head[:, 0] + 0.35 * r, mouth_y], -1),
    max(0.1 * r, 0.5 / cv.size),
    _MOUTH[None].repeat(n, 0),
    full,
  )
  cv.disc(np.stack([head[:, 0] + away * 0.4 * r, eye_y], -1), eye_r, _EYE[None].repeat(n, 0), half)
  cv.capsule(
    np.stack([head[:, 0] + away * 0.55 * r, mouth_y], -1),
    np.stack([head[:, 0] + away * 0.1 * r, mouth_y], -1),
    max(0.1 * r, 0.5 / cv.size),
    _MOUTH[None].repeat(n, 0),
    half,
  )


def render(sc: dict[str, np.ndarray], size: int, noise_rng: np.random.Generator) -> np.ndarray:
  """Rasterises scenes (one frame each, at the phase in ``sc["phase"]``).

  Args:
    sc: scene arrays from `sample_scenes` (possibly repeated per frame).
    size: image side S in pixels.
    noise_rng: generator of the per-pixel sensor noise (uniform, ±6 grey levels).

  Returns:
    uint8 [n, S, S, 3].
  """
  n = sc["action"].shape[0]
  cv = _Canvas(_background(sc, size))
  side = sc["side"]
  skin = _SKIN[sc["skin_tone"]]
  hair = _HAIR[sc["hair_color"]]
  # The card: pinned to the wall above the companion, a photo square and three text lines.
  card_c = np.stack([0.5 + side * SIDE_X, np.full(n, CARD_Y, np.float32)], -1)
  card_on = sc["card"]
  cv.rect(card_c, (CARD_W / 2, CARD_H / 2), _CARDS[sc["card_color"]], card_on)
  photo = card_c + np.array([-0.055, 0.0], np.float32)
  cv.rect(photo, (0.03, 0.045), np.tile([[120, 110, 130]], (n, 1)), card_on)
  for dy in (-0.035, 0.0, 0.035):
    cv.capsule(
      card_c + np.array([0.0, dy], np.float32),
      card_c + np.array([0.075, dy], np.float32),
      0.009,
      np.tile([[40, 40, 60]], (n, 1)),
      card_on,
    )
  # The companion: a smaller figure seen from behind (no face), below the card.
  companion_shirt = _CLOTHES[sc["companion_shirt"]]
  _figure(
    cv,
    top=np.full(n, COMPANION_TOP, np.float32),
    cx=0.5 + side * SIDE_X,
    scale=COMPANION_SCALE,
    angles=np.tile(_POSES[0, :8, 0], (n, 1)),
    mirror=np.ones(n, np.float32),
    groups=[np.ones(n, bool)],
    face=np.full(n, FACE_HIDDEN),
    side=side,
    long_hair=np.zeros(n, bool),
    bare=np.zeros(n, bool),
    rgb={
      "skin": skin,
      "hair": _HAIR[sc["hair_color"] % 2],
      "shirt": companion_shirt,
      "sleeves": companion_shirt,
      "trousers": _CLOTHES[(sc["companion_shirt"] + 3) % len(_CLOTHES)],
    },
    on=sc["companion"],
  )
  # Objects: up to three slots in the column opposite the companion.
  obj_x = 0.5 - side * SIDE_X
  for k, y in enumerate(OBJECT_SLOTS_Y):
    c = np.stack([obj_x, np.full(n, y, np.float32)], -1)
    rgb = _OBJECT_RGB[sc["object_color"][:, k]]
    shape = sc["object_shape"][:, k]
    slot = sc["object_slot"][:, k]
    cv.disc(c, OBJECT_R, rgb, slot & (shape == 0))
    cv.rect(c, (0.85 * OBJECT_R, 0.85 * OBJECT_R), rgb, slot & (shape == 1))
    tri = np.stack(
      [c + [0.0, -1.1 * OBJECT_R], c + [OBJECT_R, OBJECT_R], c + [-OBJECT_R, OBJECT_R]], axis=1
    )
    cv.polygon(tri, rgb, slot & (shape == 2))
  # The person.
  pose = _POSES[sc["action"]]  # [n, 9, 3]
  wave = pose[..., 0] + pose[..., 1] * np.sin(sc["phase"][:, None] + pose[..., 2])
  _figure(
    cv,
    top=FIGURE_TOP + wave[:, 8],
    cx=sc["cx"],
    scale=1.0,
    angles=wave[:, :8],
    mirror=sc["mirror"],
    groups=[sc["action"] == a for a in range(len(ACTIONS))],
    face=sc["face"],
    side=side,
    long_hair=sc["long_hair"],
    bare=sc["bare_torso"],
    rgb={
      "skin": skin,
      "hair": hair,
      "shirt": _CLOTHES[sc["shirt"]],
      "sleeves": _CLOTHES[sc["sleeves"]],
      "trousers": _CLOTHES[sc["trousers"]],
    },
    on=np.ones(n, bool),
  )
  img = cv.img
  img += noise_rng.integers(-6, 7, (n, size, size, 1), dtype=np.int8)
  img += 0.5  # round half up: the cast below truncates
  np.clip(img, 0, 255, out=img)
  return img.astype(np.uint8)
