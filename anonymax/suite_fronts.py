"""The suite report's Pareto fronts: each method's λ sweep, its front and its hypervolume.

A suite row with `front=m` is one point of method m's front (`anonymax.suites.FRONT_WEIGHTS`);
its point is (mean test utility, mean test cMAP of the strongest judge) over the finished seeds,
labelled with the λ its run trained with. The hypervolume (`anonymax.pareto`) is taken against
the reference point r = (utility 0 %, raw images' cMAP), so only what is more private than raw
images counts, and normalised by the box up to the ideal z = (raw utility, chance cMAP): 1 would
be an anonymizer as useful as raw images that leaves every judge at chance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from anonymax import pareto

FIGURE_FILE = "fronts.png"


def _mean(s) -> float | None:
  return None if s is None else s[0]


def fronts(rows, summaries: Mapping[str, dict], weights: Mapping[str, Sequence[float]]) -> dict:
  """{method: [point, ...]} of the measured front rows, each point a dict with the row's name,
  λ_u (None if unknown), utility and cMAP means, and whether it is on the method's front."""
  out: dict[str, list[dict]] = {}
  for row in rows:
    s = summaries.get(row.name)
    if row.front is None or s is None:
      continue
    u, p = _mean(s.get("utility")), _mean(s.get("privacy_cmap_max"))
    if u is None or p is None:
      continue
    w = weights.get(row.name)
    out.setdefault(row.front, []).append(
      {"name": row.name, "lambda_u": None if w is None else float(w[0]), "utility": u, "cmap": p}
    )
  for points in out.values():
    on = set(pareto.front((q["utility"], q["cmap"]) for q in points))
    for q in points:
      q["on_front"] = (q["utility"], q["cmap"]) in on
    points.sort(key=lambda q: (q["lambda_u"] is None, q["lambda_u"] or 0.0))
  return out


def missing_points(rows, points: Mapping[str, list[dict]]) -> dict[str, int]:
  """{method: how many of its front's rows have no measured point yet}."""
  out: dict[str, int] = {}
  for row in rows:
    if row.front is not None:
      measured = {q["name"] for q in points.get(row.front, [])}
      out[row.front] = out.get(row.front, 0) + (row.name not in measured)
  return out


def reference_points(table1: Mapping, chance: float | None):
  """(r, z) of the module docstring from the method's Table 1 rows and the chance cMAP, or None
  without a measured raw row or chance floor."""
  raw = table1.get("raw")
  if raw is None or chance is None:
    return None
  raw_u, raw_p = _mean(raw.get("utility")), _mean(raw.get("privacy_cmap_max"))
  if raw_u is None or raw_p is None:
    return None
  return (0.0, raw_p), (raw_u, float(chance))


def hypervolumes(points: Mapping[str, list[dict]], reference, ideal) -> dict[str, dict]:
  """{method: {hv, normalized (None when z does not dominate r)}}."""
  out = {}
  for method, pts in points.items():
    xy = [(q["utility"], q["cmap"]) for q in pts]
    hv = pareto.hypervolume(xy, reference)
    try:
      norm = pareto.normalized_hypervolume(xy, reference, ideal)
    except ValueError:
      norm = None
    out[method] = {"hv": hv, "normalized": norm}
  return out


def markdown(points, refs, volumes, title: str) -> list[str]:
  """The report's section: one line per method (front, hypervolume), then every point."""
  if not points:
    return []
  lines = [f"## {title}", ""]
  if refs is None:
    lines += [
      "Hypervolumes need the method's Table 1 run (its raw row gives the reference point).",
      "",
    ]
  else:
    (_, raw_p), (raw_u, chance) = refs
    lines += [
      f"![Pareto fronts]({FIGURE_FILE})",
      "",
      f"Hypervolume against the reference point (utility 0 %, raw cMAP {raw_p:.1f} %), in "
      f"points²; normalised by the box up to (raw utility {raw_u:.1f} %, chance cMAP "
      f"{chance:.1f} %). Larger is better; a point less private than raw images adds nothing.",
      "",
    ]
  lines += [
    "| method | points (λ_u: utility / cMAP) | hypervolume | normalised |",
    "|---|---|---|---|",
  ]
  for method, pts in points.items():
    cells = ", ".join(
      ("?" if q["lambda_u"] is None else f"{q['lambda_u']:g}")
      + f": {q['utility']:.1f} / {q['cmap']:.1f}"
      + ("" if q["on_front"] else " (dominated)")
      for q in pts
    )
    v = volumes.get(method)
    hv = "n/a" if v is None else f"{v['hv']:.0f}"
    norm = "n/a" if v is None or v["normalized"] is None else f"{v['normalized']:.3f}"
    lines.append(f"| {method} | {cells} | {hv} | {norm} |")
  lines.append("")
  return lines


def figure(path: str, points, refs, utility_metric: str = "utility") -> None:
  """Each method's points, its front as a staircase, raw images and the chance floor."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(6.4, 4.6))
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, (method, pts) in enumerate(points.items()):
    colour = colours[i % len(colours)]
    ax.scatter([q["utility"] for q in pts], [q["cmap"] for q in pts], color=colour, s=30,
               label=method)  # fmt: skip
    for q in pts:
      if q["lambda_u"] is not None:
        ax.annotate(f"λ={q['lambda_u']:g}", (q["utility"], q["cmap"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points", color=colour)  # fmt: skip
    # The attainment staircase: between two front points only the more useful one's cMAP is
    # reachable, so the line rises at the less useful point ("pre").
    on = sorted((q["utility"], q["cmap"]) for q in pts if q["on_front"])
    if len(on) > 1:
      ax.step([u for u, _ in on], [p for _, p in on], where="pre", color=colour, lw=1, alpha=0.7)
  if refs is not None:
    (_, raw_p), (raw_u, chance) = refs
    ax.scatter([raw_u], [raw_p], color="black", marker="s", s=30, label="raw images")
    ax.axhline(chance, color="tab:red", ls="--", lw=1, label="chance floor")
  ax.set_xlabel(f"{utility_metric} (%) ↑")
  ax.set_ylabel("privacy cMAP of the strongest judge (%) ↓")
  ax.set_title("Pareto fronts over λ (test split)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
