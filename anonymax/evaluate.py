"""Evaluates a trained anonymizer with the paper's protocol, beside every comparison row.

For each row of `anonymax.evaluation_rows` (raw, whole-image and ground-truth-region baselines,
the reference anonymizers, ours), from the same judges and the same black box:
  * Utility: the black box answers on the anonymized evaluation split — VQA accuracy (official
    rules) for image questions, action Top-1 for clips — overall and per question type, and its
    mean utility loss (recording which loss that was).
  * Privacy: a suite of **fresh** judges (`anonymax.privacy_judge`), trained from scratch on the
    row's anonymized training visuals; the headline is the strongest judge's cMAP on the
    anonymized evaluation visuals (`privacy_cmap_max`), beside the mean and per-attribute AP.
    The reviewer used in training is never a judge. The chance floor is the cMAP of a random
    scorer on the same labels, measured. The evaluation visuals are the privacy test sets of
    `anonymax.privacy_test_sets` (e.g. PA-HMDB51's frames for HMDB51, OK-VQA's annotated test
    images and VISPR's test split for OK-VQA): every set has its own figures in the row's
    ``privacy_test_sets``, the first is the headline.

The evaluation split is `config.eval.split` ("test" unless tuning on "validation"). Writes
`eval.json`, `eval.md`, `tradeoff.png` and `samples.png` in the workdir. Anonymizers are restored
on their own (`anonymax.anonymizer`): no reviewer or optimizer state is rebuilt.
"""

from __future__ import annotations

import collections
import json
import logging
import os

import numpy as np

from anonymax import (
  answer_scoring,
  black_boxes,
  checkpoint,
  eval_report,
  evaluation_rows,
  experiment,
  metric_writers,
  metrics,
  privacy_judge,
  privacy_test_sets,
  prompts,
)
from anonymax.data.pipeline import Split
from anonymax.oracles.base import Oracle
from anonymax.types import STATUS_OK


def utility(
  oracle: Oracle, visuals: np.ndarray, split: Split, batch_size: int = 64, *, scoring="official"
) -> dict:
  """The black box on uint8 visuals: accuracy (%), per question type, mean loss, answers and
  each answer's score (VQA accuracy or top-1 hit, in [0, 1]).

  VQA accuracy is `answer_scoring.accuracy` under `scoring` (``config.oracle.answer_scoring``):
  "official" scores the reply as given, "free_form" the reference answer a sentence states.
  """
  answers, losses, ok = [], [], []
  for i in range(0, visuals.shape[0], batch_size):
    out = oracle.query(visuals[i : i + batch_size], split.queries[i : i + batch_size])
    answers += list(out.answers)
    losses += list(np.asarray(out.losses, np.float64))
    ok += list(np.asarray(out.status) == STATUS_OK)
  ok = np.asarray(ok)
  if split.is_video:  # clips: action recognition, the answer matched to a class name
    predicted = np.array([metrics.match_class_name(a, split.class_names) for a in answers])
    scores = (predicted == split.labels).astype(np.float64)
    metric = "action_top1"
  else:
    scores = np.array(
      [answer_scoring.accuracy(a, list(q.answers), scoring) for a, q in zip(answers, split.queries)]
    )
    metric = "vqa_accuracy"
  scores = np.where(ok, scores, 0.0)  # an unanswered question scores 0
  per_type = {}
  if split.question_types is not None:
    types = np.asarray(split.question_types)
    per_type = {t: float(100.0 * scores[types == t].mean()) for t in sorted(set(types))}
  return {
    "metric": metric,
    "accuracy": float(100.0 * scores.mean()),
    "per_question_type": per_type,
    "loss": float(np.mean(np.asarray(losses)[ok])) if ok.any() else float("nan"),
    "failed": int((~ok).sum()),
    "answers": answers,
    "scores": [float(x) for x in scores],
  }


def load_eval_splits(config) -> tuple[Split, Split, dict[str, Split]]:
  """(utility evaluation split, privacy train split, {name: privacy test set}) of a run.

  The black box answers on `config.eval.test_data` when it names a dataset (HMDB51 runs: the
  PA-HMDB51 clips, as the paper tests them), else on the utility dataset's evaluation split. The
  judges learn from the privacy training split, config.privacy_data's (e.g. VISPR) or the utility
  dataset's own when the run has one dataset, and are scored on `anonymax.privacy_test_sets`.
  """
  split = config.eval.get("split", "test")
  if split not in ("test", "validation"):
    raise ValueError(f"config.eval.split={split!r}: must be 'test' or 'validation'")
  test_data = config.eval.get("test_data")
  if test_data is not None and test_data.get("dataset"):
    if split != "test":
      raise ValueError(
        f"config.eval.split={split!r}: config.eval.test_data names a test set; unset it to "
        "evaluate on the utility dataset's validation split"
      )
    utility_split = privacy_test_sets.load_section(test_data, split)
  else:
    utility_split = experiment.load_split(config, split)
  if experiment.has_privacy_data(config):
    p_train = experiment.load_split(config, "train", privacy=True)
  else:
    p_train = experiment.load_split(config, "train")
  return utility_split, p_train, privacy_test_sets.load(config, split, p_train, utility_split)


def judges_of(config) -> tuple[privacy_judge.JudgeSpec, ...]:
  """The judge suite of `config.eval.judges` ({name: JudgeSpec fields}; empty: the suite
  `config.eval.judge_suite` names, "default" or "quick"), every judge's steps multiplied by
  `config.eval.judge_steps_scale`.

  Raises:
    ValueError: naming the judge and the field of a bad spec.
  """
  scale = float(config.eval.get("judge_steps_scale", 1.0))
  if not scale > 0:
    raise ValueError(f"config.eval.judge_steps_scale={scale!r}: must be > 0")
  if "judges" not in config.eval and "judge_model" in config.eval:
    # A config.json written before the judge suite: its one judge, trained as it was then.
    specs = {
      config.eval.judge_model: dict(
        model=config.eval.judge_model,
        model_kwargs=dict(config.eval.get("judge_kwargs") or {}),
        seed=0,
        steps=config.eval.judge_steps,
        learning_rate=config.eval.get("judge_learning_rate", 1e-3),
        batch_size=config.eval.get("judge_batch_size", 64),
        augment=False,
        weight_decay=0.0,
        warmup_fraction=0.0,
      )
    }
  else:
    specs = config.eval.get("judges") or {}
  if not specs:
    suite = config.eval.get("judge_suite", "default")
    if suite not in privacy_judge.JUDGE_SUITES:
      raise ValueError(
        f"config.eval.judge_suite={suite!r}: must be one of {', '.join(privacy_judge.JUDGE_SUITES)}"
      )
    return privacy_judge.JUDGE_SUITES[suite](steps_scale=scale)
  judges = []
  for name, fields in specs.items():
    fields = dict(fields)
    try:
      fields["steps"] = max(1, round(int(fields["steps"]) * scale))
      judges.append(privacy_judge.JudgeSpec(name=name, **fields))
    except (TypeError, KeyError) as e:
      raise ValueError(f"config.eval.judges.{name}: {e}") from None
  return tuple(judges)


def _privacy_figures(p: dict, attributes) -> dict:
  """A row's figures on one test set (`privacy_test_sets.judge`'s, in [0, 1]) as percentages."""
  return {
    "privacy_cmap_max": 100.0 * p["cmap_max"],
    "privacy_cmap_mean": 100.0 * p["cmap_mean"],
    "per_attribute_ap": {a: 100.0 * float(ap) for a, ap in zip(attributes, p["per_attribute_ap"])},
    "judges": {name: 100.0 * float(c) for name, c in p["judges"].items()},
  }


def nan_to_none(tree):
  """NaN (a figure that was not measured) → None, so eval.json stays valid JSON."""
  if isinstance(tree, dict):
    return {k: nan_to_none(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return [nan_to_none(v) for v in tree]
  if isinstance(tree, float) and not np.isfinite(tree):
    return None
  return tree


def evaluate(config, workdir: str, *, oracle: Oracle | None = None) -> dict:
  """Runs the protocol and writes the evaluation files; returns the eval.json dict.

  Args:
    config: the run's config (`run_config.resolve(workdir)`: W/config.json, or a --config of the
      same run with other evaluation settings).
    workdir: the training workdir; its latest checkpoint's anonymizer is "ours".
    oracle: the black box; built from `config.oracle` when None.
  """
  config = config.copy_and_resolve_references()
  meta_step = checkpoint.manager(workdir, read_only=True).latest_step()
  if meta_step is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints: run launch/train.py first")
  meta = checkpoint.read_meta(checkpoint.manager(workdir, read_only=True), meta_step)
  u_split, p_train, p_tests = load_eval_splits(config)
  if oracle is None:
    oracle = black_boxes.make_oracle(config, workdir)
  calls_before = oracle.stats.calls
  rows = evaluation_rows.rows_for(config, workdir, has_regions=u_split.regions is not None)
  # The raw row asks the black box about raw images: fine for a local model, but for a remote
  # service it is opt-in (config.eval.send_raw_to_oracle). The other rows send what they show.
  send_raw = bool(config.eval.get("send_raw_to_oracle", config.oracle.kind != "openai"))
  scoring = config.oracle.get("answer_scoring", "official")  # configs before the field: official

  utilities, judged, shown = {}, {}, {}
  for row in rows:
    logging.info("evaluating %s", row.name)
    u_visuals = row.anonymize(u_split.visuals, u_split.regions)
    p_train_visuals = row.anonymize(p_train.visuals, p_train.regions)
    # A single-dataset run judges the utility split itself: anonymized once, for both.
    p_test_visuals = {
      name: u_visuals if s is u_split else row.anonymize(s.visuals, s.regions)
      for name, s in p_tests.items()
    }
    judged[row.name] = (p_train_visuals, p_test_visuals)
    if row.kind == "raw" and not send_raw:
      utilities[row.name] = None  # raw pixels never go to a remote black box unless asked
    else:
      utilities[row.name] = utility(oracle, u_visuals, u_split, scoring=scoring)
    shown[row.name] = u_visuals[: config.eval.num_samples_png]

  judges = judges_of(config)
  test_labels = {name: s.privacy for name, s in p_tests.items()}
  privacy = privacy_test_sets.judge(judged, p_train.privacy, test_labels, judges)
  headline = next(iter(p_tests))  # the first test set gives the row's privacy figures
  attributes = p_train.attribute_names  # every test set's too (privacy_test_sets.load checks)
  metric = "action_top1" if u_split.is_video else "vqa_accuracy"
  table = []
  for row in rows:
    u = utilities[row.name]
    per_set = {name: _privacy_figures(p, attributes) for name, p in privacy[row.name].items()}
    table.append(
      {
        "name": row.name,
        "kind": row.kind,
        "utility": None if u is None else u["accuracy"],
        "utility_loss": None if u is None else u["loss"],
        "utility_failed": 0 if u is None else u["failed"],
        "per_question_type": {} if u is None else u["per_question_type"],
        **per_set[headline],
        "privacy_test_sets": per_set,
      }
    )
  by_name = {r["name"]: r for r in table}
  raw, ours = by_name["raw"], by_name["ours"]
  chance = {name: privacy[rows[0].name][name]["chance_cmap"] for name in p_tests}
  result = {
    "split": config.eval.get("split", "test"),
    "privacy_test_sets": list(p_tests),
    "prompt": prompts.eval_record(config, u_split.queries[0] if u_split.queries else None),
    "chance_cmap": 100.0 * chance[headline],
    "chance_cmap_by_set": {name: 100.0 * c for name, c in chance.items()},
    "utility": ours["utility"],
    "privacy_cmap": ours["privacy_cmap_max"],
    "raw_utility": raw["utility"],
    "raw_privacy_cmap": raw["privacy_cmap_max"],
    "utility_metric": metric,
    "oracle": oracle.name,
    "oracle_loss": oracle.loss,
    "judges": [j.name for j in judges],
    "train_oracle_calls": int(meta.get("oracle_samples", 0)),
    "train_skipped": int(meta.get("skipped", 0)),
    "eval_oracle_calls": oracle.stats.calls - calls_before,
    "step": int(meta.get("step", 0)),
    "attributes": list(attributes),
    "rows": table,
  }
  result["oracle_calls"] = result["train_oracle_calls"] + result["eval_oracle_calls"]
  result = nan_to_none(result)
  write_outputs(workdir, config, result, u_split, shown, utilities, send_raw)
  return result


def write_outputs(workdir, config, result, split, shown, utilities, send_raw) -> None:
  """eval.json, eval.md, tradeoff.png, samples.png and the TensorBoard headline figures."""
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=2)
  tb = metric_writers.make_writer(
    workdir, tensorboard=config.get("tensorboard", "auto"), jsonl=False, prefix="eval"
  )
  keys = ("utility", "privacy_cmap", "raw_utility", "raw_privacy_cmap", "chance_cmap")
  tb.write(result["step"], {k: result[k] for k in keys if result[k] is not None})
  tb.close()
  note = ""
  if not send_raw:
    note = (
      "\nThe raw row's utility was not measured: raw images are not sent to a remote black box "
      "(set config.eval.send_raw_to_oracle=True to allow it).\n"
    )
  with open(os.path.join(workdir, "eval.md"), "w") as f:
    f.write(eval_report.markdown_table(result) + note + privacy_test_sets.markdown(result))
  eval_report.tradeoff_figure(os.path.join(workdir, "tradeoff.png"), result)
  n = len(shown["raw"])
  panels = []
  for name in (
    "raw",
    "ours",
    *config.eval.get("sample_baselines", ("obf_face_blur_strong", "downsample_x4")),
  ):
    if name in shown:
      u = utilities.get(name)
      answers = u["answers"][:n] if u else ["(not sent)"] * n
      panels.append((name, shown[name], answers, u["scores"][:n] if u else None))
  questions = [q.prompt for q in split.queries[:n]]
  references = [collections.Counter(q.answers).most_common(1)[0][0] for q in split.queries[:n]]
  eval_report.samples_figure(
    os.path.join(workdir, "samples.png"), panels, questions, n=n, references=references
  )
