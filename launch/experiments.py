r"""Trains and evaluates every row of an experiment suite, then writes its report.

  python launch/experiments.py --suite=paper --quick --out=results     # a quick look
  python launch/experiments.py --suite=paper --seeds=3 --out=DIR        # the full-size suite

Each row of the paper's tables (anonymax/suites.py: Table 1's baselines, Table 5's
scalarizations, Table 6's zeroth-order methods, Table 7's critical-history switches, the paper
as written and each deviation from it) is trained on the benchmark with the exact command the
report shows, for every seed, in <out>/runs/<row>/seed_<s>, and scored on the test split.
Rerunning the same command resumes: finished runs are not rerun, an interrupted one continues
from its latest checkpoint. <out>/README.md (rewritten after every run) has the tables, the
paper's figures beside them, which of the paper's claims hold here, and every row's command;
beside it tradeoff.png (every row), fronts.png (each method's front over λ, with hypervolumes in
the report), samples.png (raw and anonymized images with the black box's answers) and
landscape.png (SPSA and ours on a 2-D toy loss). After the training runs, each Table 6 row's
oracle calls to a fixed validation target are measured (anonymax/calls_to_target.py).
"""

from absl import app, flags, logging

from anonymax import cli, suite_runner, suites

flags.DEFINE_enum("suite", "paper", list(suites.SUITES), "Which rows: the paper's, or two (smoke).")
flags.DEFINE_bool(
  "quick", False, "Fewer training steps and the quick judge (anonymax/suites.py QUICK_OVERRIDES)."
)
flags.DEFINE_integer("seeds", 1, "Training seeds per row (0, 1, ...).")
flags.DEFINE_string("out", None, "Output folder: the runs and the report.", required=True)
flags.DEFINE_multi_string(
  "set",
  [],
  "FIELD=VALUE: overrides every row's config, e.g. --set=data.data_dir=/data (repeatable).",
)


@cli.user_errors
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  suite_runner.run_suite(f.suite, f.out, seeds=f.seeds, quick=f.quick, extra=f.set)
  print(f"report: {f.out}/README.md")


if __name__ == "__main__":
  app.run(main)
