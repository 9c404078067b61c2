r"""Trained runs side by side on the validation split: the black box's accuracy and one judge suite.

Choosing settings (λ, z*, the perturbed subset, ...) needs each candidate's privacy and utility
on data the reported figures never see. `launch/eval.py --config.eval.split=validation` gives
every row of one run; this gives the row "ours" of several runs at a fraction of the cost, from
the same judges: each run's anonymizer is applied to the validation split (the black box's
accuracy, per question type) and to the privacy training split, on which a fresh judge suite
learns before it is scored on the anonymized validation images (the strongest judge's cMAP, and
AP per attribute). Raw images are scored the same way as the first line.

  python benchmarks/compare_on_validation.py W1 W2 W3           # the quick suite
  python benchmarks/compare_on_validation.py --suite=default W1 W2

One JSON line per run (raw first); the last line is `best=<workdir>` among the runs whose
accuracy is within `--max_utility_drop` points of raw, by the lowest cMAP.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    prog="python benchmarks/compare_on_validation.py",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("workdirs", nargs="+", help="training workdirs of the same benchmark")
  p.add_argument("--suite", choices=("quick", "default"), default="quick", help="judge suite")
  p.add_argument("--judge_steps_scale", type=float, default=1.0, help="scales the judges' steps")
  p.add_argument("--max_utility_drop", type=float, default=5.0, help="points of raw accuracy")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
  args = parse_args(argv)
  from anonymax import (  # noqa: PLC0415 — after --help
    anonymizer,
    black_boxes,
    evaluate,
    experiment,
    judge_suites,
    privacy_judge,
    run_config,
  )

  configs = [run_config.load(w) for w in args.workdirs]
  first = configs[0]
  for w, c in zip(args.workdirs[1:], configs[1:]):
    if c.data.to_dict() != first.data.to_dict():
      raise SystemExit(f"{w}: another benchmark's data than {args.workdirs[0]}'s")
  validation = experiment.load_split(first, "validation")
  train = experiment.load_split(first, "train", privacy=experiment.has_privacy_data(first))
  oracle = black_boxes.make_oracle(first)
  rows, utilities = {"raw": (train.visuals, validation.visuals)}, {}
  utilities["raw"] = evaluate.utility(oracle, validation.visuals, validation)
  for w in args.workdirs:
    anonymize = anonymizer.load_anonymizer(w)
    shown = anonymize(validation.visuals)
    utilities[w] = evaluate.utility(oracle, shown, validation)
    rows[w] = (anonymize(train.visuals), shown)
  suite = judge_suites.JUDGE_SUITES[args.suite](steps_scale=args.judge_steps_scale)
  privacy = privacy_judge.judge_rows(rows, train.privacy, validation.privacy, suite)
  out = []
  for name, u in utilities.items():
    p = privacy[name]
    row = {
      "run": name,
      "utility": round(u["accuracy"], 2),
      "per_question_type": {k: round(v, 1) for k, v in u["per_question_type"].items()},
      "privacy_cmap_max": round(100.0 * p["cmap_max"], 2),
      "per_attribute_ap": {
        a: round(100.0 * float(x), 1)
        for a, x in zip(validation.attribute_names, p["per_attribute_ap"])
      },
      "chance_cmap": round(100.0 * p["chance_cmap"], 2),
    }
    out.append(row)
    print(json.dumps(row), flush=True)
  raw = out[0]["utility"]
  eligible = [r for r in out[1:] if r["utility"] >= raw - args.max_utility_drop]
  best = min(eligible, key=lambda r: r["privacy_cmap_max"])["run"] if eligible else "none"
  print(f"best={best}")
  return out


if __name__ == "__main__":
  main()
