r"""How well the reference black box answers raw synthetic images, per question type.

Builds (or loads from its cache) the reference black box as a run of `configs/synthetic.py`
would, asks it every question of a benchmark split on the raw images and prints the VQA accuracy
overall and per question type (as `launch/eval.py` scores its raw row); the last line is
`vqa=<x> split=<name> oracle=<name>`. The figures in docs/results_history.md ("The reference
black box on raw scenes v2") come from

  python benchmarks/reference_accuracy.py --split=validation
  python benchmarks/reference_accuracy.py --split=test
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python benchmarks/reference_accuracy.py", description=__doc__)
  p.add_argument("--scenes", choices=("v1", "v2"), default="v2")
  p.add_argument("--split", choices=("train", "validation", "test"), default="validation")
  p.add_argument("--image_size", type=int, default=64)
  p.add_argument("--num_examples", type=int, default=None, help="default: the split's own size")
  p.add_argument("--data_dir", default=None, help="TFDS data directory")
  p.add_argument("--seed", type=int, default=0, help="the data seed (the oracle's seed too)")
  p.add_argument("--num_train", type=int, default=None, help="the oracle's training examples")
  p.add_argument("--steps", type=int, default=None, help="the oracle's training steps")
  p.add_argument("--cache_dir", default=None, help="where trained reference black boxes live")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  from anonymax import black_boxes, evaluate  # noqa: PLC0415 — after --help
  from anonymax.data import synthetic  # noqa: PLC0415

  split = synthetic.load_split(
    args.split,
    data_dir=args.data_dir,
    scenes=args.scenes,
    image_size=args.image_size,
    num_examples=args.num_examples,
    seed=args.seed,
  )
  oracle = black_boxes.reference_oracle(
    image_size=args.image_size,
    scenes=args.scenes,
    cache_dir=args.cache_dir,
    seed=args.seed,
    num_train=args.num_train,
    steps=args.steps,
  )
  result = evaluate.utility(oracle, split.visuals, split)
  for kind, accuracy in result["per_question_type"].items():
    print(f"{kind:>10s} {accuracy:5.1f}")
  print(f"vqa={result['accuracy']:.1f} split={args.split} oracle={oracle.name}")
  return result


if __name__ == "__main__":
  main()
