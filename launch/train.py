r"""Trains an anonymizer against a black-box MLLM.

  python launch/train.py                                   # the default: configs/synthetic.py
  python launch/train.py --config=configs/synthetic.py:smoke --workdir=/tmp/w
  python launch/train.py --config=configs/synthetic.py --config.total_steps=100

Rerunning the same command resumes from the latest checkpoint in --workdir (a config that
describes another run is refused, naming the field). See the config file's docstring for its
variants; any field can be overridden with --config.<field>=<value>. The run's config, derived
fields filled in, is written to <workdir>/config.json; launch/eval.py and launch/anonymize.py
read it back.

Several processes (hosts) train one run when each is started with its place (or the
environment gives it; see anonymax/distributed.py), e.g. on two hosts, the workdir on a shared
filesystem:

  python launch/train.py --workdir=/shared/w --coordinator_address=10.0.0.1:8476 \
      --num_processes=2 --process_id=0        # and --process_id=1 on the other host
  srun python launch/train.py --workdir=/shared/w --distributed   # Slurm gives the rest
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from anonymax import cli, distributed, train

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
flags.DEFINE_string(
  "coordinator_address",
  None,
  f"Several processes: HOST:PORT of process 0's coordinator (else ${distributed.ENV_COORDINATOR}).",
)
flags.DEFINE_integer(
  "num_processes",
  None,
  f"Several processes: how many train this run (else ${distributed.ENV_NUM_PROCESSES}).",
)
flags.DEFINE_integer(
  "process_id",
  None,
  f"Several processes: this one's index, 0 to num_processes-1 (else ${distributed.ENV_PROCESS_ID}).",
)
flags.DEFINE_bool(
  "distributed",
  False,
  "Several processes, their places detected from the cluster (Slurm, Open MPI, Cloud TPU).",
)


@cli.user_errors
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  # Before anything runs on a device: JAX's backends are created knowing every process.
  distributed.initialize(
    distributed.settings(f.coordinator_address, f.num_processes, f.process_id, auto=f.distributed)
  )
  config_file = flags.FLAGS["config"].config_filename
  workdir = flags.FLAGS.workdir or cli.default_workdir(config_file)
  # The run, then the reference anonymizers its evaluation compares with (config.references).
  state = train.train_with_references(flags.FLAGS.config, workdir)
  if distributed.is_primary():
    print(
      f"trained to step {int(state.step)}; checkpoints in {os.path.join(workdir, 'checkpoints')}"
    )
    print(f"next: python launch/eval.py --workdir={workdir}")


if __name__ == "__main__":
  app.run(main)
