"""Evaluates a trained anonymizer with the paper's protocol.

  * Utility: the black box answers on the anonymized test split — VQA accuracy (official rules) for
    image questions, action Top-1 (the answer matched to a class name) for clips — plus its mean
    utility loss, recording which loss that was.
  * Privacy: a **fresh** ResNet trained from scratch on anonymized training visuals; its class-wise
    mAP (cMAP) on anonymized test visuals. The reviewer used in training is never the judge.
  * Every figure beside the raw-data row (identity anonymizer), and optional baseline anonymizers.

Writes `eval.json`, `eval.md` and `samples.png` in the workdir. The anonymizer is restored on its
own (`anonymax.anonymizer`): no reviewer or optimizer state is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from anonymax import anonymizer as anonymizer_lib
from anonymax import (
  black_boxes,
  checkpoint,
  experiment,
  metric_writers,
  metrics,
  models,
  privacy_judge,
)
from anonymax.data.pipeline import Split
from anonymax.oracles.base import Oracle
from anonymax.types import STATUS_OK, to_uint8

AnonymizeFn = Callable[[np.ndarray], np.ndarray]  # uint8 visuals → float32 visuals in [0, 1]


def batched_anonymizer(apply_fn, batch_size: int = 64) -> AnonymizeFn:
  """Wraps a jittable float→float anonymizer as a batched uint8→float32 numpy function."""
  jitted = jax.jit(lambda x: apply_fn(x.astype(jnp.float32) / 255.0))

  def run(visuals: np.ndarray) -> np.ndarray:
    outs = []
    for i in range(0, visuals.shape[0], batch_size):
      chunk = visuals[i : i + batch_size]
      pad = batch_size - chunk.shape[0]
      if pad:  # keep one compiled shape
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
      outs.append(np.asarray(jitted(chunk))[: batch_size - pad])
    return np.concatenate(outs).astype(np.float32)

  return run


def utility(oracle: Oracle, anonymized: np.ndarray, split: Split, batch_size: int = 64) -> dict:
  """Scores the black box on anonymized visuals (float [0, 1]); returns accuracy, loss, answers."""
  answers, losses, ok = [], [], []
  for i in range(0, anonymized.shape[0], batch_size):
    out = oracle.query(to_uint8(anonymized[i : i + batch_size]), split.queries[i : i + batch_size])
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
      [metrics.vqa_accuracy(a, list(q.answers)) for a, q in zip(answers, split.queries)]
    )
    metric = "vqa_accuracy"
  scores = np.where(ok, scores, 0.0)  # an unanswered question scores 0
  return {
    "metric": metric,
    "accuracy": float(100.0 * scores.mean()),
    "loss": float(np.mean(np.asarray(losses)[ok])) if ok.any() else float("nan"),
    "failed": int((~ok).sum()),
    "answers": answers,
  }


def privacy(train_anon, train_split: Split, test_anon, test_split: Split, config) -> dict:
  """cMAP (in %) of a fresh ResNet trained on anonymized training visuals."""
  e = config.eval
  result = privacy_judge.judge_privacy(
    train_anon,
    train_split.privacy,
    test_anon,
    test_split.privacy,
    model=e.judge_model,
    steps=e.judge_steps,
    batch_size=e.judge_batch_size,
    learning_rate=e.judge_learning_rate,
    seed=config.seed,
    model_kwargs=dict(e.get("judge_kwargs", {})),
  )
  return {"cmap": 100.0 * float(result["cmap"]), "per_class_ap": result.get("per_class_ap")}


def samples_figure(
  path: str, raw: np.ndarray, anonymized: np.ndarray, raw_answers, anon_answers, split, n=8
):
  """Raw vs anonymized visuals (middle frame of clips), the black box's answer under each."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  n = min(n, raw.shape[0])
  fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.4), squeeze=False)
  for j in range(n):
    for row, (imgs, answers, title) in enumerate(
      [(raw / 255.0, raw_answers, "raw"), (anonymized, anon_answers, "anonymized")]
    ):
      img = imgs[j]
      if img.ndim == 4:
        img = img[img.shape[0] // 2]
      ax = axes[row, j]
      ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_xlabel(f"{answers[j][:18]}", fontsize=7)
      if j == 0:
        ax.set_ylabel(title, fontsize=9)
    axes[0, j].set_title(split.queries[j].prompt[:28], fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _nan_to_none(tree):
  """NaN (a figure that was not measured) → None, so eval.json stays valid JSON."""
  if isinstance(tree, dict):
    return {k: _nan_to_none(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return [_nan_to_none(v) for v in tree]
  if isinstance(tree, float) and not np.isfinite(tree):
    return None
  return tree


def _fmt(value, spec: str) -> str:
  return "n/a" if value is None else format(value, spec)


def markdown_table(result: dict) -> str:
  metric = result["utility_metric"]
  lines = [
    f"| anonymizer | {metric} (%) ↑ | utility loss ({result['oracle_loss']}) ↓ | privacy cMAP (%) ↓ |",
    "|---|---|---|---|",
  ]
  for row in result["rows"]:
    lines.append(
      f"| {row['name']} | {_fmt(row['utility'], '.1f')} | {_fmt(row['utility_loss'], '.3f')} "
      f"| {_fmt(row['privacy_cmap'], '.1f')} |"
    )
  lines.append("")
  lines.append(
    f"Oracle: `{result['oracle']}`; training oracle calls: {result['train_oracle_calls']}; "
    f"evaluation oracle calls: {result['eval_oracle_calls']}; step {result['step']}."
  )
  return "\n".join(lines) + "\n"


def load_eval_splits(config) -> tuple[Split, Split, Split]:
  """(utility test split, privacy train split, privacy test split) of a run's config.

  The privacy judge learns from the privacy training split: config.privacy_data's (e.g. VISPR),
  or the utility dataset's own when the run has one dataset.
  """
  test_split = experiment.load_split(config, "test")
  if experiment.has_privacy_data(config):
    p_train = experiment.load_split(config, "train", privacy=True)
    return test_split, p_train, experiment.load_split(config, "test", privacy=True)
  return test_split, experiment.load_split(config, "train"), test_split


def evaluate(config, workdir: str, *, oracle: Oracle | None = None) -> dict:
  """Runs the protocol and writes eval.json / eval.md / samples.png; returns the eval.json dict.

  Args:
    config: the run's config (`run_config.resolve(workdir)`: W/config.json, or a --config of the
      same run with other evaluation settings).
    workdir: the training workdir; its latest checkpoint's anonymizer is evaluated.
    oracle: the black box; built from `config.oracle` when None.
  """
  config = config.copy_and_resolve_references()
  restored = anonymizer_lib.restore(workdir)
  meta = checkpoint.read_meta(checkpoint.manager(workdir, read_only=True), restored.step)
  test_split, p_train, p_test = load_eval_splits(config)
  if oracle is None:
    oracle = black_boxes.make_oracle(config, workdir)
  calls_before = oracle.stats.calls

  anonymize = batched_anonymizer(restored.apply)
  rows_spec: list[tuple[str, AnonymizeFn]] = [
    ("raw data", batched_anonymizer(lambda x: x)),
    ("anonymax", anonymize),
  ]
  for name in config.eval.get("baselines", ()):
    fn = models.get_model(name)
    rows_spec.append((name, batched_anonymizer(lambda x, fn=fn: fn(x))))

  # The raw-data row asks the black box about raw test images: fine for a local model, but for a
  # remote service it is opt-in (config.eval.send_raw_to_oracle).
  send_raw = bool(config.eval.get("send_raw_to_oracle", config.oracle.kind != "openai"))
  rows, answers = [], {}
  for name, fn in rows_spec:
    logging.info("evaluating %s", name)
    test_anon = fn(test_split.visuals)
    p_train_anon = fn(p_train.visuals)
    p_test_anon = test_anon if p_test is test_split else fn(p_test.visuals)
    if name == "raw data" and not send_raw:
      # Raw pixels never go to a remote black box unless the config says so explicitly.
      u = {"accuracy": float("nan"), "loss": float("nan"), "failed": 0}
      u["answers"] = ["(not sent)"] * len(test_split.queries)
      u["metric"] = "action_top1" if test_split.is_video else "vqa_accuracy"
    else:
      u = utility(oracle, test_anon, test_split)
    p = privacy(p_train_anon, p_train, p_test_anon, p_test, config)
    answers[name] = (test_anon, u["answers"])
    rows.append(
      {
        "name": name,
        "utility": u["accuracy"],
        "utility_loss": u["loss"],
        "utility_failed": u["failed"],
        "privacy_cmap": p["cmap"],
        "per_class_ap": p["per_class_ap"],
      }
    )
  raw, ours = rows[0], rows[1]
  result = {
    "utility": ours["utility"],
    "privacy_cmap": ours["privacy_cmap"],
    "raw_utility": raw["utility"],
    "raw_privacy_cmap": raw["privacy_cmap"],
    "utility_metric": u["metric"],
    "oracle": oracle.name,
    "oracle_loss": oracle.loss,
    "train_oracle_calls": int(meta.get("oracle_samples", 0)),
    "train_skipped": int(meta.get("skipped", 0)),
    "eval_oracle_calls": oracle.stats.calls - calls_before,
    "step": int(meta.get("step", 0)),
    "attributes": list(p_test.attribute_names),
    "rows": rows,
  }
  result["oracle_calls"] = result["train_oracle_calls"] + result["eval_oracle_calls"]
  result = _nan_to_none(result)
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=2)
  # The headline figures beside the training curves in TensorBoard (when tensorboardX is there).
  tb = metric_writers.make_writer(
    workdir, tensorboard=config.get("tensorboard", "auto"), jsonl=False, prefix="eval"
  )
  keys = ("utility", "privacy_cmap", "raw_utility", "raw_privacy_cmap")
  tb.write(result["step"], {k: result[k] for k in keys if result[k] is not None})
  tb.close()
  if not send_raw:
    table_note = (
      "\nThe raw-data utility was not measured: raw images are not sent to a remote black box "
    )
    table_note += "(set config.eval.send_raw_to_oracle=True to allow it).\n"
  else:
    table_note = ""
  with open(os.path.join(workdir, "eval.md"), "w") as f:
    f.write(markdown_table(result) + table_note)
  samples_figure(
    os.path.join(workdir, "samples.png"),
    test_split.visuals,
    answers["anonymax"][0],
    answers["raw data"][1],
    answers["anonymax"][1],
    test_split,
    n=config.eval.num_samples_png,
  )
  return result
