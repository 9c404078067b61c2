"""Config files: variants parse, combine, and wrong values fail with a message naming them."""

import pytest

from anonymax import train
from configs import synthetic


def test_smoke_is_smaller_than_the_default():
  smoke, default = synthetic.get_config("smoke"), synthetic.get_config()
  assert smoke.total_steps < default.total_steps
  assert smoke.data.image_size < default.data.image_size
  assert smoke.data.num_train < default.data.num_train


def test_variants_combine():
  c = synthetic.get_config("smoke,clips,oracle=openai,base_url=http://127.0.0.1:9/v1,zo=spsa_gc")
  assert c.data.clip_length > 0
  assert c.oracle.kind == "openai"
  assert c.oracle.openai.base_url == "http://127.0.0.1:9/v1"
  assert c.oracle.loss == "choice"  # chat servers give no teacher-forced NLL
  assert c.optim.zo_method == "spsa_gc"
  assert c.total_steps == synthetic.get_config("smoke").total_steps


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="smok"):
    synthetic.get_config("smok")


def test_every_zo_method_has_a_perturbation_and_bad_ones_are_named():
  for method in ("ours", "spsa", "spsa_gc", "es"):
    draw, estimate = train.perturbation_for(method)
    assert callable(draw) and callable(estimate)
  with pytest.raises(ValueError, match="zo_method='adam'"):
    train.perturbation_for("adam")


def test_optimizer_config_keeps_only_the_optimizer_fields():
  c = synthetic.get_config("smoke")
  cfg = train.optimizer_config(c)
  assert "num_samples" not in cfg and "perturb" not in cfg
  assert cfg["zo_method"] == "ours" and cfg["gains"]["c"] == c.optim.gains["c"]
