"""The privacy test sets of an evaluation, and the judges' figures on each.

The judges (`anonymax.privacy_judge`) learn from the anonymized privacy *training* split (the
examples of `config.privacy_data`, e.g. VISPR, or the utility dataset's own) and are scored on
the anonymized privacy *test* sets:

  * ``config.eval.privacy_test_data``, {name: data section} in the form of ``config.data``,
    read at the evaluation split: the paper's test sets. HMDB51-VISPR is judged on PA-HMDB51's
    frames (its same-dataset protocol), OK-VQA on the paper's annotation of the OK-VQA test
    images and on VISPR's test split (Table 3's two privacy columns). The first set is the
    headline (``privacy_cmap_max`` of eval.json), every set has its own figures;
  * absent or empty: the privacy dataset's own evaluation split (named after its dataset).

A judge trained on one label space can only be scored on the same one: every test set must have
the training split's attribute names, in its order. The data sections decide that, not this
module (VISPR's ``attributes="pa_hmdb51"`` gives VISPR's labels in PA-HMDB51's five columns; the
mapping is written once, in `anonymax.data.vispr`); a set with other names is an error naming its
section and both lists.

Each judge trains once per row and is scored on every set: the sets' visuals are concatenated
for `privacy_judge.judge_rows` (they must share one per-example shape) and its scores cut back
per set, where cMAP_j,s = cMAP(y_s, f_j(x_s)) gives the strongest judge's (max), the mean,
per-attribute AP and the chance floor of set s.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from anonymax import experiment, metrics, privacy_judge
from anonymax.data import pipeline
from anonymax.data.pipeline import Split

SECTION = "config.eval.privacy_test_data"


def load_section(data_config, split: str) -> Split:
  """A split of the dataset a data section (the form of ``config.data``) names."""
  d = data_config
  return pipeline.load_split(
    d.dataset, split, data_dir=d.get("data_dir"), **experiment.loader_options(d, split)
  )


def sections(config) -> dict:
  """{name: data section} of ``config.eval.privacy_test_data`` (empty when none is set)."""
  given = config.eval.get("privacy_test_data") or {}
  return {name: given[name] for name in given}


def load(config, split: str, train: Split, utility: Split | None = None) -> dict[str, Split]:
  """The privacy test sets {name: Split}, the headline first.

  Args:
    config: the run's config.
    split: the evaluation split ("test", or "validation" when no test set is configured).
    train: the privacy training split the judges learn from (its attribute names are the label
      space every set must have).
    utility: the utility evaluation split, returned as the set itself when the run has a single
      dataset (so that its visuals are anonymized once).

  Raises:
    ValueError: naming the section, for a set in another label space or a configured set asked
      for a validation split.
  """
  given = sections(config)
  if not given:
    if not experiment.has_privacy_data(config) and utility is not None:
      return {config.data.dataset: utility}
    return {
      experiment.privacy_data_config(config).dataset: experiment.load_split(
        config, split, privacy=True
      )
    }
  if split != "test":
    raise ValueError(
      f"config.eval.split={split!r}: {SECTION} names test sets; leave it empty to evaluate on "
      "the privacy dataset's validation split"
    )
  out = {}
  for name, section in given.items():
    if not section.get("dataset"):
      raise ValueError(f"{SECTION}.{name}: a data section needs 'dataset'")
    out[name] = load_section(section, split)
    names = tuple(out[name].attribute_names)
    if names != tuple(train.attribute_names):
      raise ValueError(
        f"{SECTION}.{name}: its attributes ({', '.join(names) or 'none'}) are not those the "
        f"judges learn from the privacy training split ({', '.join(train.attribute_names)}): "
        "load both in one label space (e.g. VISPR's attributes='pa_hmdb51' for PA-HMDB51)"
      )
  return out


def _per_attribute_ap(labels: np.ndarray, scores: np.ndarray) -> list[float]:
  """AP per attribute; NaN where the set has no positive of it (AP undefined)."""
  return [
    metrics.average_precision(labels[:, c], scores[:, c]) if labels[:, c].any() else float("nan")
    for c in range(labels.shape[1])
  ]


def _figures(labels: np.ndarray, scores: Mapping[str, np.ndarray], chance: float) -> dict:
  """One set's figures from every judge's scores on it (the keys of a `judge_rows` result)."""
  nan = float("nan")
  if not labels.any():  # no positive at all: no AP, no cMAP, nothing to rank judges by
    cmaps, strongest = dict.fromkeys(scores, nan), None
    per_attribute = [nan] * labels.shape[1]
  else:
    cmaps = {j: metrics.cmap(labels, s) for j, s in scores.items()}
    strongest = max(cmaps, key=cmaps.get)
    per_attribute = _per_attribute_ap(labels, scores[strongest])
  return {
    "cmap_max": nan if strongest is None else cmaps[strongest],
    "cmap_mean": float(np.mean(list(cmaps.values()))),
    "strongest": strongest,
    "per_attribute_ap": per_attribute,
    "judges": cmaps,
    "chance_cmap": chance,
  }


def judge(
  rows: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]],
  train_labels: np.ndarray,
  test_labels: Mapping[str, np.ndarray],
  judges,
) -> dict[str, dict[str, dict]]:
  """Every row judged by the suite on every test set: {row: {set: figures}}.

  Args:
    rows: {row name: (anonymized training visuals, {set: anonymized test visuals})}.
    train_labels: multi-hot [N, P] of the training split.
    test_labels: {set: multi-hot [M_s, P]}, in the order of the sets (the first is the headline).
    judges: the suite (`privacy_judge.JudgeSpec`s).

  Returns:
    {row: {set: dict(cmap_max, cmap_mean, strongest, per_attribute_ap, judges {name: cMAP},
    chance_cmap)}}, in [0, 1]; NaN where a set has no positive at all.
  """
  names = list(test_labels)
  if len(names) == 1:
    (only,) = names
    result = privacy_judge.judge_rows(
      {r: (train, tests[only]) for r, (train, tests) in rows.items()},
      train_labels,
      test_labels[only],
      judges,
    )
    keys = ("cmap_max", "cmap_mean", "strongest", "per_attribute_ap", "judges", "chance_cmap")
    return {r: {only: {k: figures[k] for k in keys}} for r, figures in result.items()}
  sizes = [len(test_labels[s]) for s in names]
  bounds = np.cumsum([0, *sizes])
  joined = {}
  for r, (train, tests) in rows.items():
    shapes = {s: tests[s].shape[1:] for s in names}
    if len(set(shapes.values())) > 1:
      raise ValueError(f"{SECTION}: the test sets' visuals differ per example: {shapes}")
    joined[r] = (train, np.concatenate([tests[s] for s in names]))
  result = privacy_judge.judge_rows(
    joined,
    train_labels,
    np.concatenate([test_labels[s] for s in names]),
    judges,
    keep_scores=True,
    chance_draws=1,  # the union's floor means nothing; each set's is measured below
  )
  chance = {
    s: privacy_judge.chance_cmap(test_labels[s]) if test_labels[s].any() else float("nan")
    for s in names
  }
  out = {}
  for r, figures in result.items():
    out[r] = {}
    for k, s in enumerate(names):
      part = {j: scores[bounds[k] : bounds[k + 1]] for j, scores in figures["scores"].items()}
      out[r][s] = _figures(np.asarray(test_labels[s]), part, chance[s])
  return out


def markdown(result: dict) -> str:
  """The rows' strongest-judge cMAP on every set, when there are several ("" for one set)."""
  sets = result.get("privacy_test_sets") or []
  if len(sets) < 2:
    return ""

  def cell(v):
    return "n/a" if v is None else f"{v:.1f}"

  lines = [
    "",
    "Privacy on every test set (strongest judge's cMAP, %; the first is the headline above):",
    "",
    "| row | " + " | ".join(f"{s} cMAP max ↓" for s in sets) + " |",
    "|---" * (len(sets) + 1) + "|",
  ]
  for row in result["rows"]:
    figures = row.get("privacy_test_sets") or {}
    cells = [cell((figures.get(s) or {}).get("privacy_cmap_max")) for s in sets]
    lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
  floors = ", ".join(f"{s} {cell(result['chance_cmap_by_set'].get(s))}" for s in sets)
  lines.append(f"\nChance floors: {floors}.\n")
  return "\n".join(lines)
