"""benchmarks/judge_strength.py on a tiny size: its last line parses and agrees with its result."""

import re

from tests import benchmark_scripts


def test_last_line_reports_the_judges_cmap_and_the_floor(tmp_path, capsys):
  bench = benchmark_scripts.load("judge_strength")
  result = bench.main(
    ["--image_size=32", "--num_train=48", "--num_test=32", "--model=resnet_tiny", "--steps=3",
     "--batch_size=16", f"--data_dir={tmp_path}"]
  )  # fmt: skip
  last = capsys.readouterr().out.strip().splitlines()[-1]
  match = re.fullmatch(r"cmap=([\d.]+) chance=([\d.]+) seconds=(\d+)", last)
  assert match, last
  assert float(match.group(1)) == round(100 * result["cmap_max"], 1)
  assert float(match.group(2)) == round(100 * result["chance_cmap"], 1)
  assert 0 < float(match.group(2)) < 100
