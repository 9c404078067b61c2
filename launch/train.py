r"""Trains an anonymizer against a black-box MLLM.

  python launch/train.py                                   # the default: configs/synthetic.py
  python launch/train.py --config=configs/synthetic.py:smoke --workdir=/tmp/w
  python launch/train.py --config=configs/synthetic.py --config.total_steps=100

Rerunning the same command resumes from the latest checkpoint in --workdir. See the config file's
docstring for its variants; any field can be overridden with --config.<field>=<value>.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from anonymax import checkpoint, train  # noqa: E402

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
config_flags.DEFINE_config_file(
  "config",
  os.path.join(_ROOT, "configs", "synthetic.py"),
  "Config file (path[:variants]).",
  lock_config=True,
)
flags.DEFINE_string(
  "workdir",
  None,
  "Where checkpoints, metrics.jsonl and config.json go (default: workdirs/<config name>).",
)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  workdir = flags.FLAGS.workdir or checkpoint.default_workdir(flags.FLAGS["config"].config_filename)
  state = train.train_and_evaluate(flags.FLAGS.config, workdir)
  print(f"trained to step {int(state.step)}; checkpoints in {os.path.join(workdir, 'checkpoints')}")
  print(
    f"next: python launch/eval.py --config={flags.FLAGS['config'].config_filename} --workdir={workdir}"
  )


if __name__ == "__main__":
  app.run(main)
