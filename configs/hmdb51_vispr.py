r"""The paper's video protocol: HMDB51 actions for the black box, VISPR images for privacy.

Utility examples are HMDB51 clips (T frames sampled uniformly) whose action a video MLLM must
still name on the anonymized frames; privacy examples are VISPR images with their privacy
attributes (the anonymizer works frame by frame, so one model serves both). Both are read from
TFDS's manual directory, <data_dir>/downloads/manual unless set (the first run says which file is
missing): HMDB51's class folders hmdb51/<class>/*.avi with testTrainMulti_7030_splits/, and VISPR's
images/ and annotations/ (https://tribhuvanesh.github.io/vpa/).

  python launch/train.py --config=configs/hmdb51_vispr.py:model=/models/Video-LLaVA-7B-hf \
      --workdir=workdirs/hmdb51_vispr
  python launch/eval.py  --workdir=workdirs/hmdb51_vispr

Variants (comma-separated after a colon; combinable):
  oracle=hf|openai      the black box: a local Video-LLaVA (default; model=PATH) or an
                        OpenAI-compatible server (frames sent as images; key from $OPENAI_API_KEY).
  model=PATH|NAME       the local model directory (hf) or the served model's name (openai).
  base_url=URL          an OpenAI-compatible server other than OpenAI's.
  loss=nll|choice|vqa   the utility loss (default: nll for hf, vqa for openai).
  split=1|2|3           the official train/test split (default 1).
  attributes=all        all VISPR attributes (default: the seven of prior work).
  zo=..., scal=...      as in configs/synthetic.py.
"""

from __future__ import annotations

import ml_collections

from anonymax.configs.real_data import VARIANTS as SHARED_VARIANTS
from anonymax.configs.real_data import real_data, real_data_config
from anonymax.variants import Variant, parse_variants

DATASET = "hmdb51"
VARIANTS = (
  *SHARED_VARIANTS,
  Variant("split", "the official train/test split", type=int, default=1, choices=(1, 2, 3)),
  Variant(
    "attributes", "all VISPR attributes (default: the seven of prior work)", choices=("all",)
  ),
)


def video_config(dataset: str, arg: str | None, config_name: str) -> ml_collections.ConfigDict:
  """`dataset` clips (utility) + VISPR images (privacy); `arg` selects variants."""
  args = parse_variants(arg, VARIANTS, config_name=f"configs/{config_name}")
  c = real_data_config(args, default_oracle="hf")
  c.data = real_data(dataset, image_size=112, clip_length=8, split_number=args["split"])
  c.privacy_data = real_data("vispr", image_size=112, attributes=args["attributes"] or "paper")
  c.privacy_data.data_dir = c.data.get_ref("data_dir")
  # 16 clips of 8 frames per oracle call; a local 7B video model answers a few per second.
  c.oracle.hf.batch_size = 4
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return video_config(DATASET, arg, "hmdb51_vispr.py")
