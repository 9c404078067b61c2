r"""Evaluates the latest checkpoint of a workdir with the paper's protocol.

  python launch/eval.py --workdir=workdirs/synthetic
  python launch/eval.py              # workdirs/synthetic, where launch/train.py trains by default

The run's config is read from <workdir>/config.json. A --config may be given to change how the
evaluation runs (e.g. --config=configs/synthetic.py --config.eval.judge_steps_scale=0.2): it must
describe the same run, and only evaluation settings, file locations and the oracle's transport
may differ (anything else is an error naming the field). Writes eval.json, eval.md (a Markdown
table beside the raw-data row) and samples.png in the workdir.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from anonymax import cli, evaluate, run_config

config_flags.DEFINE_config_file(
  "config",
  None,
  "Optional config file (path[:variants]) of the same run; default: <workdir>/config.json.",
  lock_config=False,
)
flags.DEFINE_string(
  "workdir",
  None,
  "The training workdir (default: workdirs/<config name>, workdirs/synthetic without --config, "
  "as launch/train.py's default).",
)

_HEADLINE = ("utility", "raw_utility", "privacy_cmap", "raw_privacy_cmap")


@cli.user_errors
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  given = flags.FLAGS.config
  config_file = flags.FLAGS["config"].config_filename if given is not None else "synthetic.py"
  workdir = flags.FLAGS.workdir or cli.default_workdir(config_file)
  result = evaluate.evaluate(run_config.resolve(workdir, given), workdir)
  with open(f"{workdir}/eval.md") as f:
    print(f.read())
  # None: not measured (e.g. raw images are not sent to a remote black box).
  fig = {k: "n/a" if v is None else f"{v:.1f}" for k, v in result.items() if k in _HEADLINE}
  print(
    f"utility {fig['utility']} (raw {fig['raw_utility']}), "
    f"privacy cMAP {fig['privacy_cmap']} (raw {fig['raw_privacy_cmap']}); files in {workdir}"
  )


if __name__ == "__main__":
  app.run(main)
