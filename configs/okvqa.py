r"""The paper's image protocol: OK-VQA questions for the black box, VISPR images for privacy.

Utility examples are OK-VQA questions on COCO images (the black box must still answer them on the
anonymized image); privacy examples are VISPR images with their privacy attributes (the reviewer
and, at evaluation, a fresh ResNet-50 judge learn those). The judges are scored, as in the
paper's Table 3, on two test sets: the OK-VQA test images with the paper's privacy annotation
(the headline, "OK-VQA privacy cMAP") and VISPR's test split ("VISPR privacy cMAP"). Both
datasets are read from TFDS's manual directory, <data_dir>/downloads/manual unless set (the
first run says which file is missing):

  OK-VQA:  OpenEnded_mscoco_{train,val}2014_questions.json, mscoco_{train,val}2014_annotations.json
           and COCO's train2014/ and val2014/ image folders (https://okvqa.allenai.org), and the
           paper's privacy annotation of the test images as okvqa_privacy_attributes.json (its
           format: anonymax/data/okvqa_privacy.py; needed by the evaluation only)
  VISPR:   images/{train2017,test2017}/ and annotations/{train2017,test2017}/
           (https://tribhuvanesh.github.io/vpa/)

  export OPENAI_API_KEY=...        # GPT-4o is the default black box
  python launch/train.py --config=configs/okvqa.py --workdir=workdirs/okvqa
  python launch/eval.py  --workdir=workdirs/okvqa

Variants (comma-separated after a colon; combinable):
  oracle=openai|hf      the black box: an OpenAI-compatible server (default: GPT-4o, key from
                        $OPENAI_API_KEY) or a local transformers LLaVA (model=PATH).
  model=NAME|PATH       the served model's name (openai) or a local model directory (hf).
  base_url=URL          an OpenAI-compatible server other than OpenAI's (e.g. vLLM).
  loss=vqa|nll|choice   the utility loss (default: vqa for openai, nll for hf).
  categories=all        every OK-VQA category (default: "four" and "seven", Sports and
                        Recreation and People and Everyday Life, where the people are).
  attributes=all        all VISPR attributes (default: the seven of prior work).
  privacy_test=okvqa|vispr  judge privacy on one test set only (default: okvqa, then vispr);
                        vispr needs no OK-VQA privacy annotation.
  zo=..., scal=...      as in configs/synthetic.py.

The optimisation settings follow the synthetic default (paint-over mask head, Adam
preconditioning, utility-first weights); on real data they are a starting point that has not been
tuned here. Any field is overridable, e.g. --config.total_steps=100 --config.data.num_train=2000.
"""

from __future__ import annotations

import ml_collections

from anonymax import prompts
from anonymax.configs.real_data import VARIANTS as SHARED_VARIANTS
from anonymax.configs.real_data import real_data, real_data_config
from anonymax.data import okvqa_privacy
from anonymax.variants import Variant, parse_variants

VARIANTS = (
  *SHARED_VARIANTS,
  Variant("categories", "every OK-VQA category (default: four and seven)", choices=("all",)),
  Variant(
    "attributes", "all VISPR attributes (default: the seven of prior work)", choices=("all",)
  ),
  Variant(
    "privacy_test", "one privacy test set only (default: okvqa, then vispr)",
    choices=("okvqa", "vispr"),
  ),
)  # fmt: skip
# People-centred OK-VQA categories (question_type words): four = Sports and Recreation,
# seven = People and Everyday Life.
PEOPLE_CATEGORIES = ("four", "seven")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """OK-VQA (utility) + VISPR (privacy); `arg` selects variants (see the module docstring)."""
  args = parse_variants(arg, VARIANTS, config_name="configs/okvqa.py")
  c = real_data_config(args, default_oracle="openai")
  categories = () if args.get("categories") == "all" else PEOPLE_CATEGORIES
  c.data = real_data("okvqa", image_size=224, categories=categories)
  c.privacy_data = real_data("vispr", image_size=224, attributes=args["attributes"] or "paper")
  # One TFDS data_dir for both unless set apart.
  c.privacy_data.data_dir = c.data.get_ref("data_dir")
  c.eval.privacy_test_data = {
    name: section(c)
    for name, section in (("okvqa", _annotated_okvqa), ("vispr", _vispr_test))
    if args.get("privacy_test") in (None, name)
  }
  # LLaVA-1.5's short-answer instruction after each question, for either black box.
  c.oracle.hf.prompt_template = prompts.VQA_SHORT_ANSWER
  c.oracle.openai.prompt_template = prompts.VQA_SHORT_ANSWER
  return c


def _annotated_okvqa(c) -> ml_collections.ConfigDict:
  """The OK-VQA test images of the run's categories, each once, with the paper's privacy labels
  in the run's VISPR attribute set, at VISPR's image size (the judges' input)."""
  d = real_data(
    "okvqa",
    image_size=c.privacy_data.get_ref("image_size"),
    categories=c.data.options.get_ref("categories"),
    privacy_annotations=okvqa_privacy.ANNOTATION_FILE,  # in the OK-VQA manual dir
    attributes=c.privacy_data.options.get_ref("attributes"),
    unique_images=True,
  )
  d.data_dir = c.data.get_ref("data_dir")
  d.manual_dir = c.data.get_ref("manual_dir")
  d.num_test = c.data.get_ref("num_test")
  return d


def _vispr_test(c) -> ml_collections.ConfigDict:
  """VISPR's test split, as the privacy data section reads it."""
  d = real_data(
    "vispr",
    image_size=c.privacy_data.get_ref("image_size"),
    attributes=c.privacy_data.options.get_ref("attributes"),
  )
  d.data_dir = c.privacy_data.get_ref("data_dir")
  d.manual_dir = c.privacy_data.get_ref("manual_dir")
  d.num_test = c.privacy_data.get_ref("num_test")
  return d
