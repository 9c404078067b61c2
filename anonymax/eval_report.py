"""What an evaluation writes beside eval.json: the Markdown table, the trade-off plot, samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _fmt(value, spec: str) -> str:
  return "n/a" if value is None else format(value, spec)


def markdown_table(result: dict) -> str:
  """eval.md: one line per row (utility, per question type, privacy max/mean), the floor."""
  metric = result["utility_metric"]
  types = sorted({t for row in result["rows"] for t in (row.get("per_question_type") or {})})
  head = [f"{metric} (%) ↑", *(f"{t} (%)" for t in types), "cMAP max (%) ↓", "cMAP mean (%)"]
  lines = [
    "| row | " + " | ".join(head) + " |",
    "|---" * (len(head) + 1) + "|",
  ]
  for row in result["rows"]:
    per_type = row.get("per_question_type") or {}
    cells = [
      _fmt(row["utility"], ".1f"),
      *(_fmt(per_type.get(t), ".1f") for t in types),
      _fmt(row["privacy_cmap_max"], ".1f"),
      _fmt(row["privacy_cmap_mean"], ".1f"),
    ]
    name = f"**{row['name']}**" if row["name"] == "ours" else row["name"]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines.append("")
  lines.append(
    f"Split: {result['split']}. Chance floor (cMAP of a random scorer on these labels): "
    f"{_fmt(result['chance_cmap'], '.1f')}. Judges: {', '.join(result['judges'])} (cMAP max is "
    f"the strongest's). Oracle: `{result['oracle']}` ({result['oracle_loss']} loss); training "
    f"oracle calls: {result['train_oracle_calls']}; evaluation oracle calls: "
    f"{result['eval_oracle_calls']}; step {result['step']}."
  )
  return "\n".join(lines) + "\n"


def _pyplot():
  import matplotlib  # noqa: PLC0415 — only the figures need it

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  return plt


def tradeoff_figure(path: str, result: dict) -> None:
  """Every row in the privacy–utility plane (cMAP max ↓ against utility ↑), with the floor."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.8))
  colours = {"raw": "black", "baseline": "tab:gray", "reference": "tab:orange", "ours": "tab:blue"}
  for row in result["rows"]:
    if row["utility"] is None or row["privacy_cmap_max"] is None:
      continue
    kind = row.get("kind", "baseline")
    ax.scatter(row["utility"], row["privacy_cmap_max"], color=colours.get(kind, "tab:gray"), s=40)
    ax.annotate(row["name"], (row["utility"], row["privacy_cmap_max"]), fontsize=7,
                xytext=(4, 3), textcoords="offset points")  # fmt: skip
  if result.get("chance_cmap") is not None:
    ax.axhline(result["chance_cmap"], color="tab:red", linestyle="--", linewidth=1)
    ax.text(ax.get_xlim()[0], result["chance_cmap"], " chance floor", color="tab:red", fontsize=7,
            va="bottom")  # fmt: skip
  ax.set_xlabel(f"{result['utility_metric']} (%) ↑")
  ax.set_ylabel("privacy cMAP of the strongest judge (%) ↓")
  ax.set_title(f"privacy–utility trade-off ({result['split']} split)")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def samples_figure(
  path: str,
  panels: list[tuple[str, np.ndarray, list[str], Sequence[float] | None]],
  prompts: Sequence[str],
  n: int = 8,
  references: Sequence[str] | None = None,
):
  """A grid (the paper's Figs. 5-7): one row per (title, uint8 visuals, the black box's answers,
  their scores or None), n samples across; the question (and its most common reference answer)
  above each column. An answer scoring above 0 is drawn green, one scoring 0 red.

  Clips show their middle frame.
  """
  plt = _pyplot()
  n = min(n, panels[0][1].shape[0])
  fig, axes = plt.subplots(len(panels), n, figsize=(1.9 * n, 2.2 * len(panels)), squeeze=False)
  for r, (title, visuals, answers, scores) in enumerate(panels):
    for j in range(n):
      img = visuals[j]
      if img.ndim == 4:
        img = img[img.shape[0] // 2]
      ax = axes[r, j]
      ax.imshow(img, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      colour = "black" if scores is None else ("tab:green" if scores[j] > 0 else "tab:red")
      ax.set_xlabel(f"{answers[j][:18]}", fontsize=7, color=colour)
      if j == 0:
        ax.set_ylabel(title, fontsize=8)
      if r == 0:
        heading = prompts[j][:28]
        if references is not None:
          heading += f"\n({references[j][:20]})"
        ax.set_title(heading, fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
