r"""How strong a privacy judge is: one judge trained from scratch on raw synthetic images.

Prints the judge's test cMAP, its per-attribute AP, the chance floor and the seconds it took;
the last line is `cmap=<x> chance=<y> seconds=<z>`. The table in docs/performance.md
("Privacy judges on raw scenes v2") comes from runs such as:

  python benchmarks/judge_strength.py --model=resnet18 --steps=1500            # ImageNet stem
  python benchmarks/judge_strength.py --model=resnet50 --steps=1500
  python benchmarks/judge_strength.py --model=resnet18 --small_input --stem_strides=2 --steps=1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python benchmarks/judge_strength.py", description=__doc__)
  p.add_argument("--scenes", choices=("v1", "v2"), default="v2")
  p.add_argument("--image_size", type=int, default=64)
  p.add_argument("--num_train", type=int, default=4000)
  p.add_argument("--num_test", type=int, default=1000)
  p.add_argument("--data_dir", default=None, help="TFDS data directory")
  p.add_argument("--model", default="resnet18", help="resnet18, resnet50 or resnet_tiny")
  p.add_argument("--num_filters", type=int, default=16)
  p.add_argument("--small_input", action="store_true", help="the small-input stem")
  p.add_argument("--stem_strides", type=int, default=1, help="with --small_input")
  p.add_argument("--steps", type=int, default=1500)
  p.add_argument("--learning_rate", type=float, default=2e-3)
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  from anonymax.data import synthetic  # noqa: PLC0415 — after --help
  from anonymax.privacy_judge import JudgeSpec, judge_rows  # noqa: PLC0415

  sizes = dict(scenes=args.scenes, image_size=args.image_size, data_dir=args.data_dir)
  train = synthetic.load_split("train", num_examples=args.num_train, **sizes)
  test = synthetic.load_split("test", num_examples=args.num_test, **sizes)
  kwargs = dict(num_filters=args.num_filters, small_input=args.small_input)
  if args.small_input:
    kwargs["stem_strides"] = args.stem_strides
  spec = JudgeSpec(
    name=args.model, model=args.model, model_kwargs=kwargs, seed=args.seed, steps=args.steps,
    learning_rate=args.learning_rate, batch_size=args.batch_size,
  )  # fmt: skip
  start = time.perf_counter()
  row = judge_rows({"raw": (train.visuals, test.visuals)}, train.privacy, test.privacy, [spec])
  seconds = time.perf_counter() - start
  result = row["raw"]
  for name, ap in zip(train.attribute_names, result["per_attribute_ap"]):
    print(f"{name:20s} AP {100 * ap:5.1f}")
  print(f"cmap={100 * result['cmap_max']:.1f} chance={100 * result['chance_cmap']:.1f} "
        f"seconds={seconds:.0f}")  # fmt: skip
  return result


if __name__ == "__main__":
  main()
