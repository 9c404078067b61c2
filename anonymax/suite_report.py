"""The report of an experiment suite: `<out>/README.md` and `<out>/tradeoff.png`.

Tables shaped like the paper's (mean ± standard deviation over the finished seeds, the paper's
own figures beside), the claims the paper makes checked one by one on these figures, and the
exact command of every row. Written from the runs' result.json records alone, so it can be
rewritten at any time (`anonymax.suite_runner` does after every run).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence

import numpy as np

from anonymax import eval_report, suite_calls, suite_fronts, suites

REPORT_FILE = "README.md"
FIGURE_FILE = "tradeoff.png"
SAMPLES_FILE = "samples.png"  # the method's raw vs anonymized grid, from its first finished run
LANDSCAPE_FILE = "landscape.png"  # SPSA and ours on a 2-D toy loss (anonymax.loss_landscape)


def spread(values: Sequence[float | None]) -> tuple[float, float, int] | None:
  """(mean, sample standard deviation (0 for one value), count) of the measured values."""
  v = np.asarray([x for x in values if x is not None], np.float64)
  if v.size == 0:
    return None
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def _fmt(s: tuple[float, float, int] | None) -> str:
  if s is None:
    return "n/a"
  mean, sd, n = s
  return f"{mean:.1f}" if n == 1 else f"{mean:.1f} ± {sd:.1f}"


def summary(records: Sequence[dict]) -> dict:
  """A row's figures over its seeds: {utility, privacy_cmap_max, calls_per_sample: spread}."""
  keys = ("utility", "privacy_cmap_max", "calls_per_sample")
  measured = [r for r in records if not r.get("failed")]
  return {k: spread([r.get(k) for r in measured]) for k in keys} | {"seeds": len(measured)}


def evaluation_rows(records: Sequence[dict]) -> dict[str, dict]:
  """The method's Table 1 rows ({name: {kind, utility, privacy_cmap_max spreads}}) over seeds."""
  by_name: dict[str, dict] = {}
  for record in records:
    for r in record.get("evaluation_rows", []):
      entry = by_name.setdefault(r["name"], {"kind": r["kind"], "utility": [], "cmap": []})
      entry["utility"].append(r["utility"])
      entry["cmap"].append(r["privacy_cmap_max"])
  return {
    name: {
      "kind": e["kind"],
      "utility": spread(e["utility"]),
      "privacy_cmap_max": spread(e["cmap"]),
    }
    for name, e in by_name.items()
  }


def _mean(s) -> float | None:
  return None if s is None else s[0]


def compare(a: Mapping, b: Mapping) -> str:
  """Whether `a` is at least as good as `b` on the means: "holds" (both axes: utility ≥, cMAP ≤),
  "mixed" (one axis), "does not hold" (neither), "not measured" (a figure is missing)."""
  ua, ub = _mean(a.get("utility")), _mean(b.get("utility"))
  pa, pb = _mean(a.get("privacy_cmap_max")), _mean(b.get("privacy_cmap_max"))
  if None in (ua, ub, pa, pb):
    return "not measured"
  wins = (ua >= ub) + (pa <= pb)
  return {2: "holds", 1: "mixed", 0: "does not hold"}[wins]


def _figures(s: Mapping) -> str:
  return f"{_fmt(s.get('utility'))} / {_fmt(s.get('privacy_cmap_max'))}"


def claims(
  rows: Sequence[suites.SuiteRow],
  summaries: Mapping[str, dict],
  table1: Mapping,
  volumes: Mapping[str, dict] | None = None,
  calls: Mapping[str, list[dict]] | None = None,
  missing_points: Mapping[str, int] | None = None,
) -> list:
  """The paper's orderings, each as (claim, verdict, the figures it rests on); `volumes` are the
  fronts' hypervolumes (`anonymax.suite_fronts.hypervolumes`), `calls` the Table 6 rows'
  calls.json records (`anonymax.suite_runner.load_calls`), `missing_points` each front's rows
  not measured yet (`anonymax.suite_fronts.missing_points`)."""
  out = []
  volumes = volumes or {}
  if "ours" in volumes and len(volumes) > 1:
    best = max(volumes, key=lambda m: volumes[m]["hv"])
    verdict = "holds" if volumes["ours"]["hv"] >= volumes[best]["hv"] else "does not hold"
    detail = ", ".join(f"{m} {v['hv']:.0f}" for m, v in volumes.items())
    incomplete = {m: n for m, n in (missing_points or {}).items() if n}
    if incomplete:  # a front missing points would be compared on fewer of them
      verdict = "not measured"
      detail += "; points not measured yet: " + ", ".join(f"{m} {n}" for m, n in incomplete.items())
    out.append(("ours has the front with the largest hypervolume", verdict, detail))
  have = {r.name for r in rows}
  ours = summaries.get("ours", {})
  if table1 and ours:
    dominating = [
      n
      for n, t in table1.items()
      if n != "ours"
      and None not in (_mean(t["utility"]), _mean(t["privacy_cmap_max"]))
      and _mean(t["utility"]) > _mean(ours["utility"])
      and _mean(t["privacy_cmap_max"]) < _mean(ours["privacy_cmap_max"])
    ]
    verdict = "holds" if not dominating else "does not hold"
    detail = (
      "no row has both higher utility and lower cMAP"
      if not dominating
      else ("dominated by " + ", ".join(f"{n} ({_figures(table1[n])})" for n in dominating))
    )
    out.append(("ours is not dominated by any Table 1 row", verdict, detail))
  chain = ("ours", "tchebycheff", "weighted_sum")
  if set(chain) <= have:
    pairs = [(chain[0], chain[1]), (chain[1], chain[2])]
    verdicts = [compare(summaries.get(a, {}), summaries.get(b, {})) for a, b in pairs]
    verdict = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
    detail = "; ".join(f"{n}: {_figures(summaries.get(n, {}))}" for n in chain)
    out.append(("augmented Tchebycheff ≥ Tchebycheff ≥ weighted sum", verdict, detail))
  measured_calls = suite_calls.claim(calls or {})
  guided = suite_calls.guided_claim(calls or {})
  if measured_calls is not None:
    out.append(measured_calls)
    if guided is not None:
      out.append(guided)
  elif {"ours", "spsa", "spsa_gc"} <= have:
    budget = {
      n: _mean(summaries.get(n, {}).get("calls_per_sample")) for n in ("ours", "spsa_gc", "spsa")
    }
    detail = ", ".join(f"{n} {c:.1f}" if c is not None else f"{n} n/a" for n, c in budget.items())
    out.append(
      (
        "calls to a fixed validation target: ours < SPSA-GC < SPSA",
        "not measured",
        "calls to the validation target are measured after the training runs; at the fixed "
        f"budget every method makes the same calls per training sample ({detail})",
      )
    )
  for row in rows:
    if "table7" in row.tables and row.name != "ours" and row.name in summaries and ours:
      out.append(
        (
          f"{row.label}: the switch helps (ours ≥ this row)",
          compare(ours, summaries[row.name]),
          f"ours {_figures(ours)}; this row {_figures(summaries[row.name])}",
        )
      )
  return out


def _paper(row: suites.SuiteRow) -> list[str]:
  if row.paper is None:
    return ["", "", ""]
  u, p, c = row.paper
  return [f"{u:.1f}", f"{p:.1f}", "" if c is None else f"{c:.0f}"]


def write(
  out: str,
  suite: str,
  rows,
  results: Mapping[str, list],
  *,
  seeds,
  quick,
  base,
  calls: Mapping[str, list[dict]] | None = None,
) -> str:
  """Writes `<out>/README.md` (and its figures when anything is measured); returns its path.

  `results` are the runs' result.json records, `calls` the Table 6 rows' calls.json records.
  """
  calls = calls or {}
  summaries = {name: summary(records) for name, records in results.items()}
  table1 = evaluation_rows(results.get("ours", []))
  # A measured record (a diverged one has no figures), else any.
  records_all = [r for records in results.values() for r in records]
  some = next(
    (r for r in records_all if "chance_cmap" in r), records_all[0] if records_all else None
  )
  weights = {}
  for row in rows:  # λ of each row: its runs' record, else its override (older records lack it)
    found = next((r["weights"] for r in results.get(row.name, []) if r.get("weights")), None)
    found = found or row.overrides.get("optim.scalarization.weights")
    if found is not None:
      weights[row.name] = found
  points = suite_fronts.fronts(rows, summaries, weights)
  missing = suite_fronts.missing_points(rows, points)
  refs = suite_fronts.reference_points(table1, None if some is None else some.get("chance_cmap"))
  volumes = suite_fronts.hypervolumes(points, *refs) if refs else {}
  finished = sum(len(v) for v in results.values())
  total = len(rows) * seeds
  quick_flag = " --quick" if quick else ""
  lines = [
    f"# Experiment report: suite `{suite}`{' (quick)' if quick else ''}",
    "",
    f"Written by `python launch/experiments.py --suite={suite}{quick_flag} --seeds={seeds} "
    f"--out={out}`; {finished} of {total} runs finished. Base config `{base}`; every figure is on "
    "the test split: utility in %, privacy as the strongest judge's cMAP in % (lower is more "
    "private), mean ± standard deviation over training seeds. The paper's figures are "
    "UCF101-VISPR with Video-LLaVA, another benchmark: compare orderings, not values.",
    "",
  ]
  if some is not None:
    lines += [
      f"Utility metric `{some.get('utility_metric')}`; chance cMAP (a random scorer on the same "
      f"labels) {some.get('chance_cmap', float('nan')):.1f}.",
      "",
      f"![privacy-utility trade-off]({FIGURE_FILE})",
      "",
    ]
  lines += ["## The paper's claims on this benchmark", ""]
  found = claims(rows, summaries, table1, volumes, calls, missing_points=missing)
  lines += [f"- **{c}**: {v} ({d})." for c, v, d in found] or ["- nothing measured yet."]
  lines.append("")
  if table1:
    lines += [
      f"## {suites.TABLES['table1']}",
      "",
      "| row | kind | utility ↑ | cMAP ↓ |",
      "|---|---|---|---|",
    ]
    lines += [
      f"| {n} | {t['kind']} | {_fmt(t['utility'])} | {_fmt(t['privacy_cmap_max'])} |"
      for n, t in table1.items()
    ]
    lines.append("")
  for table, title in suites.TABLES.items():
    members = [r for r in rows if table in r.tables]
    if table == "table1" or not members:
      continue
    if table == "fronts":
      lines += suite_fronts.markdown(points, refs, volumes, title)
      continue
    lines += [
      f"## {title}",
      "",
      "| row | utility ↑ | cMAP ↓ | training calls / sample | seeds | paper utility | paper cMAP | paper calls |",
      "|---|---|---|---|---|---|---|---|",
    ]
    for r in members:
      s = summaries.get(r.name, {})
      lines.append(
        f"| {r.label} | {_fmt(s.get('utility'))} | {_fmt(s.get('privacy_cmap_max'))} | "
        f"{_fmt(s.get('calls_per_sample'))} | {s.get('seeds', 0)} | " + " | ".join(_paper(r)) + " |"
      )
    lines.append("")
    if table == "table6":
      lines += suite_calls.markdown(members, calls)
  for table, missing in suites.NOT_YET.items():
    if any(table in r.tables for r in rows):
      lines.append(f"Not in this suite yet ({table}): {', '.join(missing)}.")
  lines += [
    "",
    "## Commands",
    "",
    "Each row's seed-0 run (the other seeds differ in `--config.seed`):",
    "",
  ]
  for r in rows:
    first = results.get(r.name, [None])[0]
    if first is None:
      lines.append(f"- {r.name}: not run yet")
      continue
    took = f" ({first['seconds'] / 60:.1f} min to train and score)" if first.get("seconds") else ""
    lines.append(f"- {r.name}{took}: `{first['train_command']}`")
    for record in results.get(r.name, []):
      if record.get("failed"):
        lines.append(f"  seed {record['seed']} **diverged**: {record['failed']}")
    if first.get("eval_command"):
      lines.append(f"  then `{first['eval_command']}`")
  figures = []
  if os.path.exists(os.path.join(out, LANDSCAPE_FILE)):
    figures += [
      "## SPSA and ours on a 2-D loss landscape (the paper's Fig. 3 shape)",
      "",
      "An illustration, not a measurement: both run `anonymax.optim` with the same gains, seed "
      "and oracle noise on a toy valley (`python -m anonymax.loss_landscape`); at equal a the "
      "history's factor (1 + I_k) also changes the length of ours' steps. With each method's step size "
      "tuned, the call counts are Table 6's above and `benchmarks/zo_calls.md`'s.",
      "",
      f"![loss landscape]({LANDSCAPE_FILE})",
      "",
    ]
  if _copy_samples(out, results):
    figures += [
      "## Raw and anonymized images with the black box's answers (the paper's Figs. 5-7 shape)",
      "",
      "The method's seed-0 run on the first test images: the question and its most common "
      "reference answer above each column, each row's answer below (green: scored above 0, red: "
      "wrong).",
      "",
      f"![samples]({SAMPLES_FILE})",
      "",
    ]
  at = lines.index("## Commands")
  lines[at:at] = figures
  path = os.path.join(out, REPORT_FILE)
  with open(path + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(path + ".tmp", path)
  _figure(out, rows, summaries, table1, some)
  if points and refs is not None:
    metric = some.get("utility_metric", "utility")
    suite_fronts.figure(os.path.join(out, suite_fronts.FIGURE_FILE), points, refs, metric)
  return path


def _copy_samples(out: str, results: Mapping[str, list]) -> bool:
  """Copies the method's first finished run's samples.png beside the report; whether it did."""
  for record in results.get("ours", []):
    source = os.path.join(out, "runs", "ours", f"seed_{record['seed']}", SAMPLES_FILE)
    if os.path.exists(source):
      shutil.copyfile(source, os.path.join(out, SAMPLES_FILE))
      return True
  return False


def _figure(out, rows, summaries, table1, some) -> None:
  """Every measured row in the privacy–utility plane (`eval_report.tradeoff_figure`)."""
  plotted = [
    {"name": n, "kind": t["kind"], "utility": _mean(t["utility"]),
     "privacy_cmap_max": _mean(t["privacy_cmap_max"])}
    for n, t in table1.items() if n != "ours"
  ]  # fmt: skip
  for r in rows:
    s = summaries.get(r.name)
    if s is not None:
      plotted.append(
        {"name": r.name, "kind": "ours" if r.name == "ours" else "suite",
         "utility": _mean(s["utility"]), "privacy_cmap_max": _mean(s["privacy_cmap_max"])}
      )  # fmt: skip
  if some is None or not plotted:
    return
  eval_report.tradeoff_figure(
    os.path.join(out, FIGURE_FILE),
    {"rows": plotted, "chance_cmap": some.get("chance_cmap"), "split": "test",
     "utility_metric": some.get("utility_metric", "utility")},
  )  # fmt: skip
