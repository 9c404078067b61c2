"""benchmarks/reference_accuracy.py on a tiny size: its last line agrees with its result."""

import re

from tests import benchmark_scripts


def test_last_line_reports_the_raw_accuracy_of_the_split(tmp_path, capsys):
  bench = benchmark_scripts.load("reference_accuracy")
  result = bench.main(
    ["--image_size=32", "--num_examples=40", "--split=test", "--num_train=64", "--steps=3",
     f"--data_dir={tmp_path / 'tfds'}", f"--cache_dir={tmp_path / 'ref'}"]
  )  # fmt: skip
  lines = capsys.readouterr().out.strip().splitlines()
  match = re.fullmatch(r"vqa=([\d.]+) split=test oracle=(\S+)", lines[-1])
  assert match, lines[-1]
  assert float(match.group(1)) == round(result["accuracy"], 1)
  assert 0 <= result["accuracy"] <= 100 and len(result["answers"]) == 40
  # One line per question type asked, each an accuracy in percent.
  rows = [re.fullmatch(r"\s*(\w+) +([\d.]+)", x) for x in lines[:-1]]
  typed = dict(m.groups() for m in rows if m)
  assert typed == {k: f"{v:.1f}" for k, v in result["per_question_type"].items()}
