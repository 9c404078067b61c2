"""Pareto fronts and their hypervolume in the privacy–utility plane.

A point is (utility u in %, higher is better; privacy cMAP p in %, lower is better). Point a
dominates point b when u_a ≥ u_b and p_a ≤ p_b with one of the two strict. The front of a set is
its non-dominated points. The hypervolume of a front against a reference point r = (u_r, p_r)
is the area of the region that the front dominates and that dominates r,

  HV(F; r) = | ⋃_{(u, p) ∈ F, u > u_r, p < p_r} [u_r, u] × [p, p_r] |,

the usual quality indicator of a bi-objective front (Zitzler & Thiele, 1998): larger is better,
and a front that dominates another has at least its hypervolume. In two dimensions it is a sum
of rectangles over the points sorted by utility (`hypervolume`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Point = tuple[float, float]


def dominates(a: Point, b: Point) -> bool:
  """Whether a = (u, p) dominates b: u_a ≥ u_b and p_a ≤ p_b, not both equal."""
  return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def front(points: Iterable[Point]) -> list[Point]:
  """The non-dominated points (duplicates kept once), sorted by utility, highest first."""
  unique = sorted(set((float(u), float(p)) for u, p in points), key=lambda q: (-q[0], q[1]))
  return [q for q in unique if not any(dominates(o, q) for o in unique)]


def hypervolume(points: Iterable[Point], reference: Point) -> float:
  """HV(F; r) of the module docstring, for any set of points (dominated ones add nothing).

  Sweeping the points by decreasing utility, each point whose cMAP is below every cMAP seen so
  far (starting at p_r) adds the slab [u_r, u] × [p, p_best):

    HV = Σ_i (u_i − u_r) · (p_best,i − p_i),  p_best,i = min(p_r, min_{j<i} p_j).

  >>> hypervolume([(80.0, 55.0), (50.0, 40.0)], reference=(0.0, 60.0))
  1150.0
  """
  u_ref, p_ref = float(reference[0]), float(reference[1])
  best, area = p_ref, 0.0
  for u, p in sorted(((float(u), float(p)) for u, p in points), key=lambda q: (-q[0], q[1])):
    if u > u_ref and p < best:
      area += (u - u_ref) * (best - p)
      best = p
  return area


def normalized_hypervolume(points: Sequence[Point], reference: Point, ideal: Point) -> float:
  """HV(F; r) ÷ the area of the box between r and an ideal point z = (u_z, p_z):
  (u_z − u_r)(p_r − p_z). With z = (raw utility, chance cMAP) and r = (0, raw cMAP), 1 would be
  an anonymizer as useful as raw images whose attributes no judge beats chance on."""
  box = (float(ideal[0]) - float(reference[0])) * (float(reference[1]) - float(ideal[1]))
  if box <= 0:
    raise ValueError(f"ideal point {ideal} does not dominate the reference point {reference}")
  return hypervolume(points, reference) / box
