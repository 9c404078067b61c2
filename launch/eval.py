r"""Evaluates the latest checkpoint of a workdir with the paper's protocol.

  python launch/eval.py --config=configs/synthetic.py --workdir=workdirs/synthetic

Writes eval.json, eval.md (a Markdown table beside the raw-data row) and samples.png in the workdir.
Use the same --config (and overrides) as for training.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from anonymax import checkpoint, evaluate  # noqa: E402

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
config_flags.DEFINE_config_file(
  "config",
  os.path.join(_ROOT, "configs", "synthetic.py"),
  "Config file (path[:variants]).",
  lock_config=False,
)
flags.DEFINE_string("workdir", None, "The training workdir (default: workdirs/<config name>).")


_HEADLINE = ("utility", "raw_utility", "privacy_cmap", "raw_privacy_cmap")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  workdir = flags.FLAGS.workdir or checkpoint.default_workdir(flags.FLAGS["config"].config_filename)
  result = evaluate.evaluate(flags.FLAGS.config, workdir)
  with open(os.path.join(workdir, "eval.md")) as f:
    print(f.read())
  # None: not measured (e.g. raw images are not sent to a remote black box).
  fig = {k: "n/a" if v is None else f"{v:.1f}" for k, v in result.items() if k in _HEADLINE}
  print(
    f"utility {fig['utility']} (raw {fig['raw_utility']}), "
    f"privacy cMAP {fig['privacy_cmap']} (raw {fig['raw_privacy_cmap']}); files in {workdir}"
  )


if __name__ == "__main__":
  app.run(main)
