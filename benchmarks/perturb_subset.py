r"""Which parameters SPSA should perturb in the real-data U-Net: a sweep on the synthetic benchmark.

The real-data configs use the SPAct/VITA U-Net (features 64-128-256-512-512, ~20.5M parameters).
SPSA's estimate of the utility gradient degrades with the number D of perturbed parameters (its
cosine with the gradient is about 1/√D), while the exact privacy gradient moves every layer. This
trains that U-Net on scenes v2 (the harder synthetic benchmark, with the reference black box),
with the real-data configs' optimisation settings, once per candidate subset (`config.optim.
perturb`, a regex on parameter paths), for the same steps and oracle calls, and scores each
on the *validation* split: the reference black box's VQA accuracy on the anonymized images (per
question type) and the reviewer's BCE at the end of training (higher: the privacy attributes are
harder to read). The reviewer is the synthetic default's (a ResNet-50 on 2 CPU cores would take
the sweep's whole budget); it is the same for every candidate.

  python benchmarks/perturb_subset.py                  # every candidate, 300 steps each
  python benchmarks/perturb_subset.py --steps 20 --candidates head all

Last line: `best=<candidate> vqa=<x>` (the highest validation VQA accuracy; ties go to fewer
perturbed parameters). Findings: docs/performance.md ("Perturbed subset at the real-data widths").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections.abc import Sequence

# name → regex on '/'-joined parameter paths (the U-Net's blocks: down_i, up_i, upsample_i;
# the mask head: mask_out, fill).
CANDIDATES = {
  "head": "^(mask_out|fill)",  # the real-data configs' setting before this sweep
  "head+last_norm": "^(mask_out|fill|up_0/norm_1)",
  "head+norms": r"^(mask_out|fill)|/norm_\d+/",  # every GroupNorm's affine: all layers, few values
  "head+up_0": "^(mask_out|fill|up_0)",  # the synthetic default's choice
  "head+up_0+down_0": "^(mask_out|fill|up_0|down_0)",  # the first encoder block too (skip path)
  "all": "",
}
REAL_DATA_FEATURES = (64, 128, 256, 512, 512)


def perturbed_count(params, regex: str) -> int:
  """How many parameters `regex` selects (as `config.optim.perturb` does: re.search on the path)."""
  import jax  # noqa: PLC0415

  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    if re.search(regex, name):
      total += int(leaf.size)
  return total


def sweep_config(regex: str, *, steps: int, seed: int, data_dir: str | None, smoke: bool):
  """scenes v2 with the real-data U-Net and optimisation settings, perturbing `regex`."""
  from anonymax.configs import okvqa, synthetic  # noqa: PLC0415

  c = synthetic.get_config("scenes=v2" + (",smoke" if smoke else ""))
  real = okvqa.get_config("oracle=hf")  # the real-data configs share their optim section
  c.anonymizer.features = REAL_DATA_FEATURES
  c.anonymizer.groups = real.anonymizer.groups
  c.optim = real.optim
  c.optim.perturb = regex
  c.references = ()
  c.total_steps = steps
  c.checkpoint_every = steps
  c.seed = seed
  if data_dir:
    c.data.data_dir = data_dir
  return c


def run_candidate(name: str, regex: str, args, workdir: str) -> dict:
  """Trains one candidate and scores it on the validation split."""
  import numpy as np  # noqa: PLC0415

  from anonymax import anonymizer, black_boxes, evaluate, experiment, train  # noqa: PLC0415

  config = sweep_config(
    regex, steps=args.steps, seed=args.seed, data_dir=args.data_dir, smoke=args.smoke
  )
  oracle = black_boxes.make_oracle(config)
  state = train.train_and_evaluate(config, workdir, oracle=oracle)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logged = [json.loads(line) for line in f]
  tail = logged[-max(1, len(logged) // 5) :]  # the last fifth of the logged steps
  split = experiment.load_split(config, "validation")
  anonymize = anonymizer.load_anonymizer(workdir)
  u = evaluate.utility(oracle, anonymize(split.visuals), split)
  return {
    "candidate": name,
    "perturb": regex,
    "perturbed": perturbed_count(state.params, regex),
    "vqa": u["accuracy"],
    "per_question_type": u["per_question_type"],
    "l_mllm_end": float(np.mean([r["l_mllm"] for r in tail])),
    "reviewer_bce_end": float(np.mean([r["reviewer_bce"] for r in tail])),
    "oracle_calls": int(logged[-1]["oracle_samples"]),
  }


def raw_validation_vqa(args) -> float:
  from anonymax import black_boxes, evaluate, experiment  # noqa: PLC0415

  config = sweep_config("", steps=1, seed=args.seed, data_dir=args.data_dir, smoke=args.smoke)
  split = experiment.load_split(config, "validation")
  return evaluate.utility(black_boxes.make_oracle(config), split.visuals, split)["accuracy"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    prog="python benchmarks/perturb_subset.py",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=tuple(CANDIDATES))
  p.add_argument("--steps", type=int, default=300, help="training steps of each candidate")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--data_dir", default=None, help="TFDS data directory")
  p.add_argument("--workdir", default=None, help="where the runs go (default: a temporary one)")
  p.add_argument("--smoke", action="store_true", help="the smoke sizes (tests)")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
  args = parse_args(argv)
  root = args.workdir or tempfile.mkdtemp(prefix="perturb_subset_")
  if os.path.isdir(root) and os.listdir(root) and args.workdir:
    raise SystemExit(f"--workdir={root}: not empty; give a new directory")
  raw = raw_validation_vqa(args)
  print(f"raw validation vqa={raw:.1f}")
  rows = []
  for name in args.candidates:
    row = run_candidate(name, CANDIDATES[name], args, os.path.join(root, name))
    rows.append(row)
    types = " ".join(f"{k}={v:.1f}" for k, v in sorted(row["per_question_type"].items()))
    print(
      f"{name:18s} perturbed={row['perturbed']:>9d} vqa={row['vqa']:.1f} "
      f"l_mllm_end={row['l_mllm_end']:.3f} reviewer_bce_end={row['reviewer_bce_end']:.3f} {types}",
      flush=True,
    )
  best = max(rows, key=lambda r: (r["vqa"], -r["perturbed"]))
  print(f"best={best['candidate']} vqa={best['vqa']:.1f}")
  return rows


if __name__ == "__main__":
  main()
