"""Config files: typed variants, clear errors, constructor defaults that agree with the config."""

import inspect
import math

import jax
import jax.numpy as jnp
import pytest

from anonymax import anonymizer, optim
from anonymax.configs import hmdb51_vispr, okvqa, synthetic, ucf101_vispr
from anonymax.models.unet import UNet
from anonymax.variants import Variant, parse_variants


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


@pytest.mark.parametrize(
  "arg, message",
  [
    ("smok", r"configs/synthetic.py: unknown variant 'smok'; known: smoke, clips"),
    ("zo=adam", r"variant zo='adam': must be one of ours, spsa, spsa_gc, es"),
    ("oracle", r"variant oracle needs a value"),
    ("smoke=maybe", r"variant smoke='maybe': a flag takes no value"),
    ("smoke,smoke", r"variant smoke given twice"),
  ],
)
def test_bad_variants_are_one_line_errors_naming_them(arg, message):
  with pytest.raises(ValueError, match=message) as e:
    synthetic.get_config(arg)
  assert "\n" not in str(e.value)


def test_the_parser_types_values():
  variants = (Variant("split", "which split", type=int, default=1, choices=(1, 2, 3)),)
  assert parse_variants("split=2", variants, config_name="c.py") == {"split": 2}
  with pytest.raises(ValueError, match="split='two': must be int"):
    parse_variants("split=two", variants, config_name="c.py")
  with pytest.raises(ValueError, match="split='4': must be one of 1, 2, 3"):
    parse_variants("split=4", variants, config_name="c.py")


def test_real_data_configs_parse_their_own_and_the_shared_variants():
  c = okvqa.get_config("oracle=hf,model=/m,categories=all,attributes=all,zo=spsa")
  assert c.oracle.kind == "hf" and c.oracle.hf.model_path == "/m" and c.oracle.loss == "nll"
  assert c.data.options.categories == () and c.privacy_data.options.attributes == "all"
  assert c.optim.zo_method == "spsa"
  assert okvqa.get_config().oracle.loss == "vqa"  # the openai default scores generated text
  assert hmdb51_vispr.get_config("split=3").data.options.split_number == 3
  assert ucf101_vispr.get_config().data.dataset == "ucf101"
  with pytest.raises(ValueError, match="configs/hmdb51_vispr.py: variant split='4'"):
    hmdb51_vispr.get_config("split=4")
  with pytest.raises(ValueError, match="configs/okvqa.py: unknown variant 'clips'"):
    okvqa.get_config("clips")


def test_the_optimizer_takes_the_whole_optim_section():
  c = synthetic.get_config()
  opt = optim.make_optimizer(c.optim)  # no field of the section is left for anyone else
  assert opt.estimator.num_evaluations == 2 * c.optim.num_samples


def test_unet_defaults_agree_with_the_default_config():
  """Every defaulted UNet field the config sets has the config's value as its default."""
  section = synthetic.get_config().anonymizer
  params = inspect.signature(UNet).parameters
  for name, value in section.items():
    if name == "name":
      continue
    default = params[name].default
    assert default is inspect.Parameter.empty or default == value, name
  assert params["features"].default is inspect.Parameter.empty  # no width fits every config


def test_the_real_data_perturbed_subset_is_the_mask_head():
  """configs/real_data.py perturbs 68 parameters: the mask head's 1×1 conv over the 64 channels
  of the finest level, its bias, and the 3 fill colours."""
  c = okvqa.get_config()
  model = anonymizer.build(anonymizer.model_config(c))
  x = jnp.zeros((1, 32, 32, 3))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
  mask = optim.resolve_mask(c.optim.perturb, params)
  sizes = jax.tree.map(lambda m, p: math.prod(p.shape) if m else 0, mask, params)
  assert sum(jax.tree.leaves(sizes)) == 68
