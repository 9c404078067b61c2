"""Runs an experiment suite (`anonymax.suites`): every row, every seed, resumable, then the report.

Each (row, seed) is one run in `<out>/runs/<row>/seed_<s>`:

  1. its config is parsed from the very flags its training command shows (`row_argv`), so the
     command in the report is exactly what ran;
  2. it trains (`anonymax.train`; a killed run resumes from its latest checkpoint);
  3. it is scored on the test split with the run's judge suite: the method's own row ("table1")
     gets the whole evaluation protocol (`anonymax.evaluate.evaluate`: every baseline row, and
     the reference anonymizers trained beside it), every other row the row "ours" alone;
  4. `result.json` is written last, atomically: a row with one is finished and never rerun. A
     row whose training diverges (non-finite losses) is finished too, its result saying so.

Then every Table 6 row's oracle calls to a fixed validation target are measured
(`anonymax.calls_to_target`, `run_calls`): the step size tuned once per row on the tuning seeds
(`<out>/runs/<row>/calls_tuning.json`), then one run per suite seed (`calls.json` in the seed's
folder), both written atomically and never redone.

After every finished run the report (`anonymax.suite_report`) is rewritten, so a partial suite
already has one.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from collections.abc import Sequence

from absl import flags
from ml_collections import config_flags
from tqdm import tqdm

from anonymax import (
  anonymizer,
  black_boxes,
  calls_to_target,
  checkpoint,
  evaluate,
  loss_landscape,
  privacy_judge,
  run_config,
  suite_report,
  suites,
  train,
)

RESULT_FILE = "result.json"
CALLS_FILE = "calls.json"
TUNING_FILE = "calls_tuning.json"
SUITE_FILE = "suite.json"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_dir(out: str, row: suites.SuiteRow, seed: int) -> str:
  """Where the run of `row` with training seed `seed` lives."""
  return os.path.join(out, "runs", row.name, f"seed_{seed}")


def row_argv(
  base: str, row: suites.SuiteRow, seed: int, *, quick: bool, extra: Sequence[str] = ()
) -> list[str]:
  """The `--config...` flags of the run: the base config, the row's overrides, --quick's, the
  user's own (`extra`, "field=value" each, e.g. "data.data_dir=/data"), the seed."""
  argv = [f"--config={base}", *suites.override_flags(row.overrides)]
  if quick:
    argv += suites.override_flags(suites.QUICK_OVERRIDES)
  return argv + [f"--config.{e}" for e in extra] + [f"--config.seed={seed}"]


def train_command(argv: list[str], workdir: str) -> str:
  """The shell command that trains the run (what the report shows)."""
  return shlex.join(["python", "launch/train.py", *argv, f"--workdir={workdir}"])


def parse_config(argv: list[str]):
  """The config `launch/train.py` builds from `argv`, parsed by the same ml_collections flag.

  A config path relative to the repository (configs/...) is looked up there, whatever the
  current directory.
  """
  path, _, variants = argv[0].removeprefix("--config=").partition(":")
  if not os.path.isabs(path) and not os.path.exists(path):
    path = os.path.join(REPO_ROOT, path)
  first = f"--config={path}" + (f":{variants}" if variants else "")
  full = ["experiments", first, *argv[1:]]
  values = flags.FlagValues()
  # sys_argv: the overrides to define are found in these flags, not in the process's own.
  config_flags.DEFINE_config_file(
    "config", None, "", flag_values=values, lock_config=True, sys_argv=full
  )
  try:
    values(full)
  except (flags.Error, AttributeError, KeyError) as e:  # no such field, a value of a wrong type
    raise ValueError(f"suite row flags {' '.join(argv)}: {e}") from None
  return values.config


def score_ours(config, workdir: str) -> dict:
  """The row "ours" of a trained run on the evaluation split, with the run's judge suite.

  The same figures as that row of `evaluate.evaluate` (the black box's accuracy, the strongest
  judge's cMAP on the first privacy test set), without the baseline rows.
  """
  u_split, p_train, p_tests = evaluate.load_eval_splits(config)
  anonymize = anonymizer.load_anonymizer(workdir)
  shown = anonymize(u_split.visuals)
  oracle = black_boxes.make_oracle(config, workdir)
  scoring = config.oracle.get("answer_scoring", "official")
  u = evaluate.utility(oracle, shown, u_split, scoring=scoring)
  headline, test = next(iter(p_tests.items()))
  test_visuals = shown if test is u_split else anonymize(test.visuals)
  p = privacy_judge.judge_rows(
    {"ours": (anonymize(p_train.visuals), test_visuals)},
    p_train.privacy,
    test.privacy,
    evaluate.judges_of(config),
  )["ours"]
  return {
    "utility": u["accuracy"],
    "per_question_type": u["per_question_type"],
    "privacy_cmap_max": 100.0 * p["cmap_max"],
    "privacy_cmap_mean": 100.0 * p["cmap_mean"],
    "per_attribute_ap": dict(
      zip(p_train.attribute_names, (100.0 * float(a) for a in p["per_attribute_ap"]))
    ),
    "chance_cmap": 100.0 * p["chance_cmap"],
    "privacy_test_set": headline,
    "utility_metric": "action_top1" if u_split.is_video else "vqa_accuracy",
  }


def _training_record(workdir: str, config) -> dict:
  """Oracle calls of the training run, per training sample."""
  mgr = checkpoint.manager(workdir, read_only=True)
  meta = checkpoint.read_meta(mgr, mgr.latest_step())
  calls = int(meta.get("oracle_samples", 0))
  return {
    "step": int(meta.get("step", 0)),
    "train_oracle_calls": calls,
    "calls_per_sample": calls / max(1, int(config.data.num_train)),
  }


def _write_atomic(path: str, record: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1, allow_nan=False, default=float)
  os.replace(tmp, path)


def run_row(
  base: str, row: suites.SuiteRow, seed: int, out: str, *, quick: bool, extra: Sequence[str] = ()
) -> dict:
  """Trains and scores one run (resuming a killed one); returns and writes its result.json."""
  workdir = run_dir(out, row, seed)
  argv = row_argv(base, row, seed, quick=quick, extra=extra)
  config = parse_config(argv)
  os.makedirs(workdir, exist_ok=True)
  start = time.perf_counter()
  full_evaluation = "table1" in row.tables
  try:
    if full_evaluation:  # the reference anonymizers too, for the evaluation's rows
      train.train_with_references(config, workdir)
    else:
      train.train_and_evaluate(config, workdir)
  except FloatingPointError as e:  # the row diverged: a result too, not a reason to stop
    record = {"row": row.name, "seed": seed, "train_command": train_command(argv, workdir)}
    record |= {"failed": str(e), "seconds": time.perf_counter() - start}
    _write_atomic(os.path.join(workdir, RESULT_FILE), record)
    logging.warning("suite row %s, seed %d diverged: %s", row.name, seed, e)
    return record
  saved = run_config.load(workdir)
  record = {
    "row": row.name,
    "seed": seed,
    "train_command": train_command(argv, workdir),
    "weights": [float(w) for w in saved.optim.scalarization.weights],
    **_training_record(workdir, saved),
  }
  if full_evaluation:
    result = evaluate.evaluate(saved, workdir)
    ours = next(r for r in result["rows"] if r["name"] == "ours")
    record |= {
      "eval_command": shlex.join(["python", "launch/eval.py", f"--workdir={workdir}"]),
      "utility": ours["utility"],
      "privacy_cmap_max": ours["privacy_cmap_max"],
      "privacy_cmap_mean": ours["privacy_cmap_mean"],
      "per_attribute_ap": ours.get("per_attribute_ap"),
      "chance_cmap": result["chance_cmap"],
      "utility_metric": result["utility_metric"],
      "evaluation_rows": [
        {k: r[k] for k in ("name", "kind", "utility", "privacy_cmap_max")} for r in result["rows"]
      ],
    }
  else:
    record |= score_ours(saved, workdir)
  record["seconds"] = time.perf_counter() - start
  record = json.loads(json.dumps(record, default=float))  # plain JSON types
  _write_atomic(os.path.join(workdir, RESULT_FILE), evaluate.nan_to_none(record))
  return record


def run_calls(
  base: str,
  row: suites.SuiteRow,
  seed: int,
  out: str,
  settings: dict,
  *,
  quick: bool,
  extra: Sequence[str] = (),
) -> dict:
  """The row's oracle calls to the validation target for suite seed `seed` (`calls.json`).

  The step size a is tuned once per row (`settings`: `suites.calls_settings`) and kept in
  `<out>/runs/<row>/calls_tuning.json`; the reported run uses training seed tune_seeds + seed.
  """
  config = parse_config(row_argv(base, row, seed, quick=quick, extra=extra))
  task = calls_to_target.Task(**settings["task"])
  oracle = black_boxes.make_oracle(config)
  validation = calls_to_target.Validation(config, oracle, task.validation)

  def one(a: float, s: int) -> dict:
    return calls_to_target.run(
      calls_to_target.task_config(config, task, a=a, seed=s), task, oracle, validation
    )

  tuning_path = os.path.join(out, "runs", row.name, TUNING_FILE)
  tuned_with = json.loads(json.dumps(settings))  # as JSON reads it back (tuples → lists)
  if os.path.exists(tuning_path):
    with open(tuning_path) as f:
      saved = json.load(f)
    if {k: saved.get(k) for k in tuned_with} != tuned_with:
      raise ValueError(
        f"{tuning_path}: tuned with other settings than this suite's {tuned_with}; move it away "
        "to tune again"
      )
    chosen = saved["chosen_a"]
  else:
    seeds = range(settings["tune_seeds"])
    chosen, runs = calls_to_target.tune(
      lambda a: [one(a, s) for s in seeds], settings["grid"], settings["extensions"]
    )
    os.makedirs(os.path.dirname(tuning_path), exist_ok=True)
    tuning = {"row": row.name, "chosen_a": chosen, "runs": runs} | tuned_with
    _write_atomic(tuning_path, evaluate.nan_to_none(json.loads(json.dumps(tuning, default=float))))
  reported = one(chosen, settings["tune_seeds"] + seed)
  record = {
    **reported,
    "train_seed": reported["seed"],
    "row": row.name,
    "seed": seed,  # the suite's seed, as in result.json
    "chosen_a": chosen,
    "missed": reported["calls_to_target"] is None,
    "calls_per_sample_to_target": reported["calls_counted"] / max(1, int(config.data.num_train)),
  }
  record = evaluate.nan_to_none(json.loads(json.dumps(record, default=float)))
  _write_atomic(os.path.join(run_dir(out, row, seed), CALLS_FILE), record)
  return record


def load_calls(out: str, rows, seeds: int) -> dict[str, list[dict]]:
  """{row name: the measured calls.json records, by seed}."""
  return _load_records(out, rows, seeds, CALLS_FILE)


def check_same_suite(out: str, settings: dict) -> None:
  """Records the suite's settings in `<out>/suite.json`; resuming with others is refused (its
  finished runs would be mixed with runs of another suite). More seeds may be added."""
  path = os.path.join(out, SUITE_FILE)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    for key, value in settings.items():
      if saved.get(key) != value:
        raise ValueError(
          f"{path}: this folder holds a suite with {key}={saved.get(key)!r}, not {value!r}; "
          "use another --out"
        )
    return
  _write_atomic(path, settings)


def load_results(out: str, rows, seeds: int) -> dict[str, list[dict]]:
  """{row name: the finished runs' result.json records, by seed} of a suite's output folder."""
  return _load_records(out, rows, seeds, RESULT_FILE)


def _load_records(out: str, rows, seeds: int, filename: str) -> dict[str, list[dict]]:
  """{row name: the `filename` records of its seeds' folders that exist, by seed}."""
  found = {}
  for row in rows:
    for seed in range(seeds):
      path = os.path.join(run_dir(out, row, seed), filename)
      if os.path.exists(path):
        with open(path) as f:
          found.setdefault(row.name, []).append(json.load(f))
  return found


def run_suite(
  suite: str, out: str, *, seeds: int = 1, quick: bool = False, extra: Sequence[str] = ()
) -> dict:
  """Runs every (row, seed) of `suite` not finished yet in `out`, then writes `out`/README.md.

  `extra` ("field=value" each) overrides every row's config (data or cache locations, say).
  Returns {row name: [result records]}. A killed suite resumes: finished runs are skipped, the
  run that was interrupted resumes from its latest checkpoint.
  """
  if seeds < 1:
    raise ValueError(f"--seeds={seeds}: must be at least 1")
  rows = suites.suite_rows(suite)
  base = suites.BASE_CONFIGS[suite]
  os.makedirs(out, exist_ok=True)
  check_same_suite(out, {"suite": suite, "quick": bool(quick), "set": list(extra)})
  # Seed 0 of every row first; then Table 6's calls to the validation target.
  jobs = [(row, seed, RESULT_FILE) for seed in range(seeds) for row in rows]
  jobs += [(row, seed, CALLS_FILE) for seed in range(seeds) for row in suites.calls_rows(rows)]
  todo = [job for job in jobs if not os.path.exists(os.path.join(run_dir(out, *job[:2]), job[2]))]
  settings = suites.calls_settings(suite, quick)
  landscape = os.path.join(out, suite_report.LANDSCAPE_FILE)
  if not os.path.exists(landscape):  # the paper's Fig. 3: seconds, from anonymax.optim itself
    loss_landscape.figure(landscape, loss_landscape.trajectories())

  def report():
    done = load_results(out, rows, seeds)
    calls = load_calls(out, rows, seeds)
    suite_report.write(out, suite, rows, done, seeds=seeds, quick=quick, base=base, calls=calls)
    return done

  bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="suite", position=0)
  try:
    for row, seed, kind in todo:
      what = "calls to target" if kind == CALLS_FILE else "train and score"
      bar.set_postfix_str(f"{row.name} seed {seed}: {what}")
      logging.warning("suite %s: %s, seed %d (%s)", suite, row.name, seed, what)
      if kind == CALLS_FILE:
        run_calls(base, row, seed, out, settings, quick=quick, extra=extra)
      else:
        run_row(base, row, seed, out, quick=quick, extra=extra)
      bar.update(1)
      report()
  finally:
    bar.close()
  return report()
