r"""Which parameters SPSA should perturb in the real-data U-Net: a sweep on the synthetic benchmark.

The real-data configs use the SPAct/VITA U-Net (features 64-128-256-512-512, ~20.5M parameters).
SPSA estimates the utility gradient only on the perturbed subset S (`config.optim.perturb`, a
regex on parameter paths), and its estimate degrades with |S|; the exact privacy gradient moves
every layer. Two measurements, on scenes v2 with the reference black box, the real-data U-Net and
the real-data configs' optimisation settings:

* ``--measure=gradient`` (default; a minute): the quality of SPSA's utility step per subset.
  One SPSA estimate on S is ĝ = (g·Δ)Δ with Δ Rademacher on S, so E[ĝ] = g_S and
  E‖ĝ‖² = |S|·‖g_S‖²; with the best step size, the expected decrease of the loss per step is
  ‖g_S‖⁴ / (2L·E‖ĝ‖²) = ‖g_S‖² / (2L·|S|), whatever the preconditioning's scale. So a subset's
  merit is the mean square of the utility gradient over its parameters,

    merit(S) = E_b[‖g_b,S‖²] / |S|,

  printed relative to the mask head's, beside its share of the gradient's energy
  E‖g_S‖² / E‖g‖². g_b is the exact gradient of the reference black box's NLL on utility batch
  b (batch_size examples of the training split) through the anonymizer at initialisation: the
  reference black box is a JAX network, differentiated here for this analysis only (training
  never sees its gradient). L (the loss's curvature along the step) is taken as equal for all.
  The anonymizer is measured at initialisation, or trained (``--params_from=W``, e.g. the
  workdir of a ``--measure=train`` run).
* ``--measure=train`` (hours on 2 CPU cores at 64 px): each candidate trained for ``--steps``
  with the same calls, scored on the *validation* split: the black box's VQA accuracy on the
  anonymized images (per question type) and the reviewer's BCE at the end (higher: the privacy
  attributes are harder to read). The reviewer is the synthetic default's (a ResNet-50 would take
  the sweep's whole budget), the same for every candidate.

  python benchmarks/perturb_subset.py                      # the gradient measure, 16 batches
  python benchmarks/perturb_subset.py --measure=train --steps 300 --candidates head head+norms

Last line: `best=<candidate> ...` (gradient: the highest merit; train: the highest validation
VQA accuracy, ties to fewer perturbed parameters). Findings: docs/performance.md ("The perturbed
subset at the real-data widths").
"""

from __future__ import annotations

import argparse
import json
import os
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


def selected(params, regex: str) -> list[bool]:
  """Which leaves of `params` `regex` selects, as `config.optim.perturb` does (the optimizer's
  `anonymax.optim.masks.resolve_mask`), in `jax.tree.leaves` order."""
  import jax  # noqa: PLC0415

  from anonymax.optim.masks import resolve_mask  # noqa: PLC0415

  return [bool(m) for m in jax.tree.leaves(resolve_mask(regex, params))]


def perturbed_count(params, regex: str) -> int:
  """How many parameters `regex` selects."""
  import jax  # noqa: PLC0415

  leaves = jax.tree.leaves(params)
  return sum(int(leaf.size) for leaf, keep in zip(leaves, selected(params, regex)) if keep)


def sweep_config(
  regex: str, *, steps: int, seed: int, data_dir: str | None, smoke: bool,
  features: Sequence[int] | None = REAL_DATA_FEATURES,
):  # fmt: skip
  """scenes v2 with the real-data U-Net and optimisation settings, perturbing `regex`
  (`features=None`: the synthetic default's U-Net, to read one of its trained runs)."""
  from anonymax.configs import okvqa, synthetic  # noqa: PLC0415

  c = synthetic.get_config("scenes=v2" + (",smoke" if smoke else ""))
  real = okvqa.get_config("oracle=hf")  # the real-data configs share their optim section
  if features is not None:
    c.anonymizer.features = tuple(features)
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
    regex, steps=args.steps, seed=args.seed, data_dir=args.data_dir, smoke=args.smoke,
    features=args.features,
  )  # fmt: skip
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


def gradient_merits(args) -> list[dict]:
  """merit(S) and energy share of every candidate (the module docstring), at initialisation."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from anonymax import anonymizer, experiment  # noqa: PLC0415
  from anonymax.oracles import reference_model  # noqa: PLC0415

  config = sweep_config(
    "", steps=1, seed=args.seed, data_dir=args.data_dir, smoke=args.smoke,
    features=None if args.synthetic_widths else args.features,
  )  # fmt: skip
  if args.mask_init_logit is not None:  # a mask already painting, as later in training
    config.anonymizer.mask_init_logit = args.mask_init_logit
  exp = experiment.build(config)
  params = exp.init_state().params
  if args.params_from:  # a trained anonymizer of the same shape (e.g. a --measure=train run's)
    trained = anonymizer.restore(args.params_from)
    if jax.tree.structure(trained.params) != jax.tree.structure(params):
      raise SystemExit(f"--params_from={args.params_from}: not the real-data U-Net's parameters")
    params = trained.params
  oracle = exp.oracle  # the reference black box: its network, for the exact gradient
  net = reference_model.make_model(
    oracle.config, num_answers=len(oracle.vocab), num_questions=len(oracle.prompts)
  )
  # As the oracle indexes its vocabulary: an answer's first entry.
  vocab = list(enumerate(oracle.vocab))
  vocab_index = {reference_model.normalize_text(a): i for i, a in reversed(vocab)}

  def nll(theta, x, question_ids, weights):
    y = exp.anonymizer.apply({"params": theta}, x)
    log_p = jax.nn.log_softmax(net.apply({"params": oracle.params}, y, question_ids))
    return -(weights * log_p).sum(-1).mean()

  grad = jax.jit(jax.grad(nll))
  sq = np.zeros(len(jax.tree.leaves(params)))
  for b in range(args.batches):
    u_visuals, u_ids, _, _ = exp.batch(b)
    queries = [exp.utility.queries[i] for i in np.asarray(u_ids)]
    weights = np.zeros((len(queries), len(oracle.vocab)), np.float32)
    for row, q in enumerate(queries):
      for i, w in reference_model.answer_weights(q.answers, vocab_index).items():
        if i >= 0:
          weights[row, i] = w
    qids = np.array([oracle.parse_prompt(q.prompt) for q in queries], np.int32)
    g = grad(params, np.asarray(u_visuals, np.float32) / 255.0, qids, weights)
    sq += [float(np.sum(np.square(leaf))) for leaf in jax.tree.leaves(g)]
  sq /= args.batches
  sizes = np.array([leaf.size for leaf in jax.tree.leaves(params)])
  rows = []
  for name, regex in CANDIDATES.items():
    keep = np.array(selected(params, regex))
    rows.append(
      dict(
        candidate=name,
        perturb=regex,
        perturbed=int(sizes[keep].sum()),
        merit=float(sq[keep].sum() / sizes[keep].sum()),
        energy_share=float(sq[keep].sum() / sq.sum()),
      )  # fmt: skip
    )
  head = next(r["merit"] for r in rows if r["candidate"] == "head")
  for r in rows:
    r["merit_vs_head"] = r["merit"] / head
  return [r for r in rows if r["candidate"] in args.candidates]


def raw_validation_vqa(args) -> float:
  from anonymax import black_boxes, evaluate, experiment  # noqa: PLC0415

  config = sweep_config(
    "", steps=1, seed=args.seed, data_dir=args.data_dir, smoke=args.smoke, features=args.features
  )
  split = experiment.load_split(config, "validation")
  return evaluate.utility(black_boxes.make_oracle(config), split.visuals, split)["accuracy"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    prog="python benchmarks/perturb_subset.py",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--measure", choices=("gradient", "train"), default="gradient")
  p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=tuple(CANDIDATES))
  p.add_argument("--batches", type=int, default=16, help="gradient: utility batches averaged")
  p.add_argument("--steps", type=int, default=300, help="train: training steps of each candidate")
  p.add_argument(
    "--features", type=lambda t: tuple(int(x) for x in t.split(",")), default=REAL_DATA_FEATURES,
    help="the U-Net's widths (default: the real-data configs' 64,128,256,512,512)",
  )  # fmt: skip
  p.add_argument("--params_from", default=None, help="gradient: a trained workdir's anonymizer")
  p.add_argument(
    "--synthetic_widths", action="store_true",
    help="gradient: the synthetic default's U-Net (with --params_from: one of its runs)",
  )  # fmt: skip
  p.add_argument(
    "--mask_init_logit", type=float, default=None,
    help="gradient: the mask head's initial logit (default: the config's, -3: paints ~5%%)",
  )  # fmt: skip
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--data_dir", default=None, help="TFDS data directory")
  p.add_argument("--workdir", default=None, help="where the runs go (default: a temporary one)")
  p.add_argument("--smoke", action="store_true", help="the smoke sizes (tests)")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
  args = parse_args(argv)
  if args.measure == "gradient":
    rows = gradient_merits(args)
    for r in rows:
      print(
        f"{r['candidate']:18s} perturbed={r['perturbed']:>9d} merit_vs_head={r['merit_vs_head']:.3g} "
        f"energy_share={r['energy_share']:.3g}"
      )
    best = max(rows, key=lambda r: r["merit"])
    print(f"best={best['candidate']} merit_vs_head={best['merit_vs_head']:.3g}")
    return rows
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
