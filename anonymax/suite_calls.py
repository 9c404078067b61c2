"""The suite report's Table 6 measure: oracle calls to a fixed validation target per method.

Each record is a `calls.json` of `anonymax.suite_runner.run_calls` (the task of
`anonymax.calls_to_target`): one training run per suite seed with the row's tuned step size,
counted until the black box's validation NLL of the anonymized images first reaches the target,
or at the most calls the run could make when it misses.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

# The paper's ordering: fewer calls to the target than SPSA-GC, which needs fewer than SPSA.
CHAIN = ("ours", "spsa_gc", "spsa")


def median_calls(records: Sequence[dict]) -> float | None:
  """The median of the counted calls (a miss counts as the most calls), None without records."""
  return statistics.median(r["calls_counted"] for r in records) if records else None


def claim(calls: Mapping[str, list[dict]]) -> tuple[str, str, str] | None:
  """(claim, verdict, detail) of "calls to the target: ours < SPSA-GC < SPSA", None when none
  of the three rows is in the suite's calls."""
  if not any(n in calls for n in CHAIN):
    return None
  medians = {n: median_calls(calls.get(n, [])) for n in CHAIN}
  missed = sorted(n for n in CHAIN for r in calls.get(n, []) if r.get("missed"))
  detail = ", ".join(f"{n} {m:g}" if m is not None else f"{n} n/a" for n, m in medians.items())
  detail = "median calls to the validation target: " + detail
  if missed:
    detail += f"; missed the target on a seed (counted at the most calls): {', '.join(missed)}"
  if None in medians.values():
    verdict = "not measured"
  else:
    m = [medians[n] for n in CHAIN]
    verdict = "holds" if m[0] < m[1] < m[2] else "does not hold"
  return ("calls to a fixed validation target: ours < SPSA-GC < SPSA", verdict, detail)


def guided_claim(calls: Mapping[str, list[dict]]) -> tuple[str, str, str] | None:
  """(claim, verdict, detail) of "the surrogate-guided estimator needs at most half the calls of
  SPSA and of SPSA-GC" (the goal beyond the paper), None without its row."""
  if "guided_surrogate" not in calls:
    return None
  guided = median_calls(calls["guided_surrogate"])
  others = {n: median_calls(calls.get(n, [])) for n in ("spsa", "spsa_gc")}
  if None in others.values():
    return ("guided (online surrogate) needs ≤ ½ the calls of SPSA and SPSA-GC", "not measured",
            f"guided_surrogate {guided:g}; SPSA or SPSA-GC not measured")  # fmt: skip
  ratios = {n: m / guided for n, m in others.items()}
  verdict = "holds" if min(ratios.values()) >= 2 else "does not hold"
  detail = ", ".join(f"{n} ÷ guided = {r:.2f}" for n, r in ratios.items())
  return ("guided (online surrogate) needs ≤ ½ the calls of SPSA and SPSA-GC", verdict, detail)


def markdown(rows, calls: Mapping[str, list[dict]]) -> list[str]:
  """The table: per Table 6 row, the tuned a, calls per seed, median, per training image."""
  measured = [r for r in rows if r.name in calls]
  if not measured:
    return []
  first = next(iter(calls.values()))[0]
  nll = {k: "n/a" if first.get(k) is None else f"{first[k]:.3f}" for k in
         ("start_nll", "target_nll", "raw_nll")}  # fmt: skip
  lines = [
    "### Oracle calls to a fixed validation target",
    "",
    "The black box's validation NLL of the anonymized images must fall part of the way from the "
    "task's painted start to raw images' (on the first measured run: from "
    f"{nll['start_nll']} to {nll['target_nll']}, raw {nll['raw_nll']}); "
    "training calls are counted until then, a miss at the most calls (†). The task and the "
    "tuning rule: `anonymax/calls_to_target.py`.",
    "",
    "| row | tuned a | calls per seed | median | per training image | paper calls |",
    "|---|---|---|---|---|---|",
  ]
  for row in measured:
    records = sorted(calls[row.name], key=lambda r: r["seed"])
    per_seed = ", ".join(f"{r['calls_counted']}{' †' if r.get('missed') else ''}" for r in records)
    per_image = statistics.median(r["calls_per_sample_to_target"] for r in records)
    paper = "" if row.paper is None or row.paper[2] is None else f"{row.paper[2]:.0f}"
    lines.append(
      f"| {row.label} | {records[0]['chosen_a']:g} | {per_seed} | "
      f"{median_calls(records):g} | {per_image:.3f} | {paper} |"
    )
  lines.append("")
  return lines
