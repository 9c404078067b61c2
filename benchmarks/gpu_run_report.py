r"""What a first GPU run of the paper's tables needs and costs: paths, measurements, projections.

`benchmarks/gpu_run.sh` trains and evaluates a reduced row of Table 1 (HMDB51-VISPR, Video-LLaVA)
and of Table 3 (OK-VQA, LLaVA-1.5) and calls this script three ways:

  check   --llava=DIR --video-llava=DIR --data-dir=DIR [--tables 1 3]
          every model directory and dataset file those runs read; exit 2 naming each missing one.
  report  --run 1=W [--run 3=W] [--memory-log=F] [--data-dir=DIR]
          per run (the workdir of a reduced run): seconds per step and the black box's seconds per
          step, peak GPU memory, and the projected cost of the full table.
  plan    [--data-dir=DIR]
          per paper table, without a GPU: steps, oracle calls, and for the cloud tables (2, 4:
          GPT-4V) the tokens and the API cost at the stated prices (README, "What a full run of
          each paper table needs").

The projection of one column of a table (a trained anonymizer and every evaluation row), from the
reduced run's own figures:

  hours = [ S·t_step + c·(N/n)·t_sample + max(E − c·t_sample, 0)·(J/j) ] / 3600

  t_step    measured seconds per training step (steady state: the second half of the logged steps)
  t_sample  measured black-box seconds per sample in training (oracle_seconds / oracle_samples)
  S         the full run's steps (the config's total_steps)
  c, n      the reduced evaluation's black-box calls (eval.json) and test examples (num_test)
  N         the full test set's size (counted from the data where given, else published sizes)
  E         the reduced evaluation's wall seconds (what gpu_run.sh measured)
  j, J      the judges' training steps, reduced and full (each judge of each row trains j steps)

The evaluation's time other than the black box's is the judges' training, which grows with their
steps. Table 1's UCF101-VISPR column is priced with the HMDB51 run's t_step and t_sample and its
own N (the same model, clip length and batch); Table 3 has one column (both privacy test sets
are judged in one evaluation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence

# Test-set sizes of the releases, used when the data are not at hand (`--data-dir` counts them).
# OK-VQA's people-centred categories have no published count: the whole val set bounds them.
PUBLISHED_TEST_SIZES = {
  "pa_hmdb51": 515,  # annotated videos
  "ucf101": 3783,  # testlist01
  "vispr": 8000,  # test2017
  "okvqa": 5046,  # all of OK-VQA's val questions: an upper bound for the people categories
}

# GPT-4o's list price in USD per 1M tokens (input, output); pass today's with --price-*.
DEFAULT_PRICES = (2.50, 10.00)


@dataclasses.dataclass(frozen=True)
class Column:
  """One column of a paper table: the config that trains it and the test set its black box sees."""

  name: str
  config: str  # a module of configs/
  test_set: str  # a key of PUBLISHED_TEST_SIZES
  measured: bool  # trained by gpu_run.sh (else priced from the table's measured column)


@dataclasses.dataclass(frozen=True)
class Table:
  number: str
  title: str
  oracle: str  # "hf" (a local model, GPU hours) or "openai" (a cloud model, API cost)
  model_flag: str  # gpu_run.sh's variable for the weights
  columns: tuple[Column, ...]


_VIDEO = (
  Column("HMDB51-VISPR", "hmdb51_vispr", "pa_hmdb51", True),
  Column("UCF101-VISPR", "ucf101_vispr", "ucf101", False),
)
_VQA = (Column("OK-VQA", "okvqa", "okvqa", True),)
TABLES = {
  "1": Table("1", "action recognition, Video-LLaVA", "hf", "VIDEO_LLAVA", _VIDEO),
  "2": Table("2", "action recognition, GPT-4V", "openai", "", _VIDEO),
  "3": Table("3", "VQA, LLaVA-1.5", "hf", "LLAVA", _VQA),
  "4": Table("4", "VQA, GPT-4V", "openai", "", _VQA),
}


# --- check --------------------------------------------------------------------------------------


def _manual(data_dir: str) -> str:
  return os.path.join(data_dir, "downloads", "manual")


def missing_paths(tables: Sequence[str], *, llava: str, video_llava: str, data_dir: str) -> list:
  """Every problem the reduced runs of `tables` would meet, one line each (empty: ready).

  The datasets are checked by their own loaders' listing functions (the errors they raise name
  the missing paths), the models by their config.json.
  """
  from anonymax.data import hmdb51, okvqa, okvqa_privacy, pa_hmdb51, vispr  # noqa: PLC0415

  problems = []
  models = {"1": ("VIDEO_LLAVA", video_llava), "3": ("LLAVA", llava)}
  for t in tables:
    variable, path = models[t]
    if not path:
      problems.append(f"{variable}: not set (the local {TABLES[t].title.split(', ')[1]} weights)")
    elif not os.path.isfile(os.path.join(path, "config.json")):
      problems.append(f"{variable}={path}: no config.json (a transformers model directory)")
  if not data_dir:
    return [*problems, "DATA_DIR: not set (the TFDS data directory; files go in downloads/manual)"]
  manual = _manual(data_dir)
  checks = [lambda: vispr.read_annotations(manual, "train"), lambda: vispr.read_annotations(manual, "test")]  # fmt: skip
  if "1" in tables:
    checks += [
      lambda: hmdb51.list_videos(manual, "train", 1),
      lambda: pa_hmdb51.list_videos(manual),
    ]
  if "3" in tables:
    checks += [
      lambda: okvqa.check_manual_dir(manual),
      lambda: okvqa_privacy.read_annotations(os.path.join(manual, okvqa_privacy.ANNOTATION_FILE)),
    ]
  for check in checks:
    try:
      check()
    except (ValueError, OSError) as e:
      problems.append(str(e).splitlines()[0])
  return list(dict.fromkeys(problems))  # VISPR's two splits may name the same folder


# --- measurements -------------------------------------------------------------------------------


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  try:
    with open(path) as f:
      rows = [json.loads(line) for line in f if line.strip()]
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: not a run's metrics ({e})") from None
  rows = [r for r in rows if "wall_seconds" in r and "step" in r]
  if not rows:
    raise ValueError(f"{path}: no logged training step")
  return rows


def steady_rates(rows: Sequence[dict]) -> dict:
  """Seconds per step, black-box seconds per step and per sample over the second half of the
  logged steps (from the start of the run when only one step was logged).

  Rates are differences of the cumulative counters between the logged row nearest the middle
  and the last one, so compilation and the first steps' warm-up do not count.
  """
  last = rows[-1]
  mid = rows[(len(rows) - 1) // 2] if len(rows) > 1 else {k: 0.0 for k in last}
  steps = last["step"] - mid["step"]
  samples = last.get("oracle_samples", 0) - mid.get("oracle_samples", 0)
  oracle_s = last.get("oracle_seconds", 0.0) - mid.get("oracle_seconds", 0.0)
  return {
    "seconds_per_step": (last["wall_seconds"] - mid["wall_seconds"]) / steps,
    "oracle_seconds_per_step": oracle_s / steps,
    "oracle_seconds_per_sample": oracle_s / samples if samples else float("nan"),
    "steps_measured": steps,
  }


def peak_memory_mib(path: str | None) -> float | None:
  """The largest figure of an `nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits`
  log (MiB, every GPU's line), or None without one."""
  if not path or not os.path.isfile(path):
    return None
  values = []
  with open(path) as f:
    for line in f:
      try:
        values.append(float(line.strip().split(",")[0]))
      except ValueError:
        continue
  return max(values) if values else None


def column_hours(
  *,
  t_step,
  t_sample,
  full_steps,
  eval_calls,
  n,
  full_n,
  eval_seconds,
  judge_steps,
  full_judge_steps,
) -> float:
  """The module docstring's projection of one column, in hours."""
  oracle_eval = eval_calls * t_sample
  judges = max(eval_seconds - oracle_eval, 0.0) * full_judge_steps / judge_steps
  return (full_steps * t_step + oracle_eval * full_n / n + judges) / 3600.0


def judge_steps_of(config) -> int:
  """The steps of the config's first judge (every judge of the real-data configs trains as long)."""
  judges = config.eval.get("judges") or {}
  return int(next(iter(judges.values()))["steps"]) if judges else 0


# --- test sets and plan -------------------------------------------------------------------------


def test_size(test_set: str, data_dir: str | None) -> tuple[int, str]:
  """(size, where it comes from) of a test set: counted from the data when they are at hand."""
  if data_dir:
    from anonymax.configs import okvqa as okvqa_config  # noqa: PLC0415
    from anonymax.data import okvqa, pa_hmdb51, ucf101, vispr  # noqa: PLC0415

    manual = _manual(data_dir)
    count = {
      "pa_hmdb51": lambda: len(pa_hmdb51.list_videos(manual)),
      "ucf101": lambda: len(ucf101.list_videos(manual, "test", 1)),
      "vispr": lambda: len(vispr.read_annotations(manual, "test")),
      "okvqa": lambda: len(okvqa.read_questions(manual, "test", okvqa_config.PEOPLE_CATEGORIES)),
    }[test_set]
    try:
      return count(), "counted"
    except (ValueError, OSError):
      pass
  bound = "at most " if test_set == "okvqa" else ""
  return PUBLISHED_TEST_SIZES[test_set], f"{bound}published"


def _config(column: Column, oracle: str):
  import importlib  # noqa: PLC0415

  module = importlib.import_module(f"anonymax.configs.{column.config}")
  return module.get_config(f"oracle={oracle}")


def evaluation_rows(config, oracle: str) -> int:
  """How many rows the black box answers at evaluation: raw (not sent to a cloud model), the
  whole-image and detected-face baselines, the trained references, ours."""
  from anonymax import evaluation_rows as er  # noqa: PLC0415

  rows = 1 + len(er.WHOLE_IMAGE_ROWS) + len(er.DETECTED_FACE_ROWS) + len(config.references) + 1
  return rows - (oracle == "openai")


def image_tokens(side: int) -> int:
  """GPT-4o's tokens for one side×side image at high detail: 85 + 170 per 512-px tile after
  fitting 2048 px and scaling the short side to 768 px when larger (OpenAI's stated rule)."""
  s = min(1.0, 2048 / side) * side
  s = s * min(1.0, 768 / s)
  return 85 + 170 * math.ceil(s / 512) ** 2


def plan(tables: Sequence[str], data_dir: str | None, prices=DEFAULT_PRICES) -> list[dict]:
  """Per table and column: steps, training and evaluation calls, test size; cloud tables add
  input tokens per call (images at high detail, the question at ~4 characters a token), output
  tokens at most max_tokens, and the cost at `prices` (USD per 1M tokens)."""
  out = []
  for t in tables:
    table = TABLES[t]
    for column in table.columns:
      c = _config(column, table.oracle)
      n, source = test_size(column.test_set, data_dir)
      train_calls = c.total_steps * 2 * c.optim.num_samples * c.batch_size
      eval_calls = evaluation_rows(c, table.oracle) * n
      entry = dict(
        table=t, title=table.title, column=column.name, steps=int(c.total_steps),
        train_calls=int(train_calls), eval_calls=int(eval_calls), test_size=n,
        test_size_source=source,
      )  # fmt: skip
      if table.oracle == "openai":
        frames = max(int(c.data.get("clip_length") or 0), 1)
        text = 60 if column.test_set == "okvqa" else 60 + 12 * 51  # the question (+ 51 options)
        tokens_in = frames * image_tokens(int(c.data.image_size)) + text // 4
        tokens_out = int(c.oracle.openai.max_tokens)
        calls = train_calls + eval_calls
        entry.update(
          input_tokens_per_call=tokens_in,
          output_tokens_per_call_max=tokens_out,
          cost_usd_max=calls * (tokens_in * prices[0] + tokens_out * prices[1]) / 1e6,
        )
      out.append(entry)
  return out


# --- the commands -------------------------------------------------------------------------------


def report(runs: dict[str, str], memory_log: str | None, data_dir: str | None) -> list[dict]:
  """The measured figures of each reduced run and the projection of its full table."""
  from anonymax import run_config  # noqa: PLC0415

  out = []
  for t, workdir in runs.items():
    table = TABLES[t]
    run = run_config.load(workdir)
    rates = steady_rates(read_metrics(workdir))
    with open(os.path.join(workdir, "eval.json")) as f:
      result = json.load(f)
    with open(os.path.join(workdir, "eval_seconds")) as f:
      eval_seconds = float(f.read())
    n = int(run.data.num_test)
    hours = {}
    for column in table.columns:
      full = _config(column, table.oracle)
      full_n, _ = test_size(column.test_set, data_dir)
      hours[column.name] = column_hours(
        t_step=rates["seconds_per_step"],
        t_sample=rates["oracle_seconds_per_sample"],
        full_steps=full.total_steps,
        eval_calls=result["eval_oracle_calls"],
        n=n,
        full_n=full_n,
        eval_seconds=eval_seconds,
        judge_steps=judge_steps_of(run),
        full_judge_steps=judge_steps_of(full),
      )
    out.append(
      dict(
        table=t,
        workdir=workdir,
        **rates,
        eval_seconds=eval_seconds,
        eval_oracle_calls=result["eval_oracle_calls"],
        test_examples=n,
        utility=result["utility"],
        privacy_cmap=result["privacy_cmap"],
        peak_gpu_memory_mib=peak_memory_mib(memory_log),
        projected_gpu_hours=hours,
        projected_table_gpu_hours=sum(hours.values()),
      )  # fmt: skip
    )
  return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    prog="python benchmarks/gpu_run_report.py",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  sub = p.add_subparsers(dest="command", required=True)
  check = sub.add_parser("check", help="the paths the reduced runs need")
  check.add_argument("--llava", default="")
  check.add_argument("--video-llava", default="")
  check.add_argument("--data-dir", default="")
  check.add_argument("--tables", nargs="+", default=["1", "3"], choices=("1", "3"))
  rep = sub.add_parser("report", help="measured figures and projections of reduced runs")
  rep.add_argument("--run", action="append", required=True, help="TABLE=WORKDIR, e.g. 1=w/t1")
  rep.add_argument("--memory-log", default=None, help="nvidia-smi memory.used log (MiB)")
  rep.add_argument("--data-dir", default=None, help="count the full test sets from the data")
  pl = sub.add_parser("plan", help="steps, calls and API cost of every table, no GPU needed")
  pl.add_argument("--tables", nargs="+", default=list(TABLES), choices=tuple(TABLES))
  pl.add_argument("--data-dir", default=None, help="count the test sets from the data")
  pl.add_argument("--price-input", type=float, default=DEFAULT_PRICES[0], help="USD / 1M tokens")
  pl.add_argument("--price-output", type=float, default=DEFAULT_PRICES[1], help="USD / 1M tokens")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None):
  args = parse_args(argv)
  if args.command == "check":
    problems = missing_paths(
      args.tables, llava=args.llava, video_llava=args.video_llava, data_dir=args.data_dir
    )
    for line in problems:
      print(f"missing: {line}")
    if problems:
      sys.exit(2)
    print("ready: every path the reduced runs of tables " + " ".join(args.tables) + " read")
    return []
  if args.command == "plan":
    rows = plan(args.tables, args.data_dir, (args.price_input, args.price_output))
  else:
    runs = {}
    for spec in args.run:
      table, _, workdir = spec.partition("=")
      if table not in ("1", "3") or not workdir:
        sys.exit(f"--run={spec!r}: want 1=WORKDIR or 3=WORKDIR")
      runs[table] = workdir
    rows = report(runs, args.memory_log, args.data_dir)
  for row in rows:
    print(json.dumps(row))
  return rows


if __name__ == "__main__":
  main()
