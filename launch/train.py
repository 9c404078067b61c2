r"""Trains an anonymizer against a black-box MLLM.

  python launch/train.py                                   # the default: configs/synthetic.py
  python launch/train.py --config=configs/synthetic.py:smoke --workdir=/tmp/w
  python launch/train.py --config=configs/synthetic.py --config.total_steps=100

Rerunning the same command resumes from the latest checkpoint in --workdir (a config that
describes another run is refused, naming the field). See the config file's docstring for its
variants; any field can be overridden with --config.<field>=<value>. The run's config, derived
fields filled in, is written to <workdir>/config.json; launch/eval.py and launch/anonymize.py
read it back.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from anonymax import cli, train

_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
config_flags.DEFINE_config_file(
  "config",
  os.path.join(_CONFIGS, "synthetic.py"),
  "Config file (path[:variants]).",
  lock_config=True,
)
flags.DEFINE_string(
  "workdir",
  None,
  "Where checkpoints, metrics.jsonl and config.json go (default: workdirs/<config name>).",
)


@cli.user_errors
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config_file = flags.FLAGS["config"].config_filename
  workdir = flags.FLAGS.workdir or cli.default_workdir(config_file)
  # The run, then the reference anonymizers its evaluation compares with (config.references).
  state = train.train_with_references(flags.FLAGS.config, workdir)
  print(f"trained to step {int(state.step)}; checkpoints in {os.path.join(workdir, 'checkpoints')}")
  print(f"next: python launch/eval.py --workdir={workdir}")


if __name__ == "__main__":
  app.run(main)
