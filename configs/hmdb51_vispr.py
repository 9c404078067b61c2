r"""The paper's video protocol: HMDB51 actions for the black box, VISPR images for privacy.

Utility examples are HMDB51 clips (T frames sampled uniformly) whose action a video MLLM must
still name on the anonymized frames; privacy examples are VISPR images with their privacy
attributes (the anonymizer works frame by frame, so one model serves both). As in the paper
(after Wu et al., TPAMI 2020), the test set is PA-HMDB51: the black box names the action of its
clips, and the privacy judges, trained on anonymized VISPR training images, are scored on its
anonymized frames with their frame-level labels. Training leaves PA-HMDB51's videos out of
HMDB51's (exclude_pa_hmdb51). The label space is PA-HMDB51's five attributes (skin colour, face,
gender, nudity, relationship): VISPR's seven attributes of prior work merged into them
(anonymax/data/vispr.py, attributes="pa_hmdb51", has the table), for the reviewer and the judges
alike, so that judges trained on VISPR are scored on the columns PA-HMDB51 annotates.

Everything is read from TFDS's manual directory, <data_dir>/downloads/manual unless set (the
first run says which file is missing): HMDB51's class folders hmdb51/<class>/*.avi with
testTrainMulti_7030_splits/, PA-HMDB51's PrivacyAttributes/<class>.json
(https://github.com/VITA-Group/PA-HMDB51) beside them, and VISPR's images/ and annotations/
(https://tribhuvanesh.github.io/vpa/).

  python launch/train.py --config=configs/hmdb51_vispr.py:model=/models/Video-LLaVA-7B-hf \
      --workdir=workdirs/hmdb51_vispr
  python launch/eval.py  --workdir=workdirs/hmdb51_vispr

Variants (comma-separated after a colon; combinable):
  oracle=hf|openai      the black box: a local Video-LLaVA (default; model=PATH) or an
                        OpenAI-compatible server (frames sent as images; key from $OPENAI_API_KEY).
  model=PATH|NAME       the local model directory (hf) or the served model's name (openai).
  base_url=URL          an OpenAI-compatible server other than OpenAI's.
  loss=nll|choice|vqa   the utility loss (default: nll for hf, vqa for openai).
  split=1|2|3           the official split whose training videos are used (default 1; the
                        test set is PA-HMDB51's videos all the same).
  attributes=paper|all  the reviewer and judges learn VISPR's own seven (paper) or 67 (all)
                        attributes instead of PA-HMDB51's five; PA-HMDB51 cannot score those,
                        so privacy is then judged on VISPR's test split (actions still on
                        PA-HMDB51).
  zo=..., scal=...      as in configs/synthetic.py.
"""

from __future__ import annotations

import ml_collections

from anonymax import prompts
from anonymax.configs.real_data import VARIANTS as SHARED_VARIANTS
from anonymax.configs.real_data import real_data, real_data_config
from anonymax.variants import Variant, parse_variants

DATASET = "hmdb51"
VARIANTS = (
  *SHARED_VARIANTS,
  Variant("split", "the official train/test split", type=int, default=1, choices=(1, 2, 3)),
  Variant(
    "attributes",
    "VISPR's own attributes instead of PA-HMDB51's five (HMDB51; UCF101: paper by default)",
    choices=("paper", "all"),
  ),
)
# Each video protocol's test sets (the paper's, after Wu et al. 2020 and Dave et al. 2022): HMDB51
# is tested on PA-HMDB51 (actions and privacy on the same videos), UCF101 on its own test split
# (actions) and VISPR's (privacy).
PA_HMDB51_TESTED = ("hmdb51",)


def video_config(dataset: str, arg: str | None, config_name: str) -> ml_collections.ConfigDict:
  """`dataset` clips (utility) + VISPR images (privacy); `arg` selects variants."""
  args = parse_variants(arg, VARIANTS, config_name=f"configs/{config_name}")
  c = real_data_config(args, default_oracle="hf")
  pa_tested = dataset in PA_HMDB51_TESTED
  # Training must not see the test videos: PA-HMDB51's are HMDB51 videos.
  exclude = {"exclude_pa_hmdb51": True} if pa_tested else {}
  c.data = real_data(dataset, image_size=112, clip_length=8, split_number=args["split"], **exclude)
  attributes = args["attributes"] or ("pa_hmdb51" if pa_tested else "paper")
  c.privacy_data = real_data("vispr", image_size=112, attributes=attributes)
  c.privacy_data.data_dir = c.data.get_ref("data_dir")
  if pa_tested:
    c.eval.test_data = _pa_hmdb51(c, frames=False)
    if attributes == "pa_hmdb51":  # the judges' label space is PA-HMDB51's: score them there
      c.eval.privacy_test_data = {"pa_hmdb51": _pa_hmdb51(c, frames=True)}
  # 16 clips of 8 frames per oracle call; a local 7B video model answers a few per second.
  c.oracle.hf.batch_size = 4
  # The question with the class names as options, so that the reply names a class.
  c.oracle.hf.prompt_template = prompts.ACTION_CHOICES
  c.oracle.openai.prompt_template = prompts.ACTION_CHOICES
  return c


def _pa_hmdb51(c, *, frames: bool) -> ml_collections.ConfigDict:
  """PA-HMDB51 from the HMDB51 manual dir: clips at the utility size, or frames at VISPR's."""
  size = c.privacy_data.get_ref("image_size") if frames else c.data.get_ref("image_size")
  d = real_data("pa_hmdb51", image_size=size, clip_length=c.data.get_ref("clip_length"))
  if frames:
    d.options = {"frames": True}
  d.data_dir = c.data.get_ref("data_dir")
  d.manual_dir = c.data.get_ref("manual_dir")
  d.num_test = c.data.get_ref("num_test")
  return d


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return video_config(DATASET, arg, "hmdb51_vispr.py")
