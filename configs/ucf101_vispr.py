r"""The paper's video protocol on UCF101: UCF101 actions for the black box, VISPR for privacy.

As configs/hmdb51_vispr.py (same variants), with UCF101's UCF-101/<Class>/*.avi videos and its
ucfTrainTestlist/ split files in the manual directory. This is the paper's cross-dataset protocol:
actions are tested on UCF101's test split (split=1|2|3 chooses both halves), privacy on VISPR's
test split, in VISPR's seven attributes of prior work (attributes=all: all 67).

  python launch/train.py --config=configs/ucf101_vispr.py:model=/models/Video-LLaVA-7B-hf \
      --workdir=workdirs/ucf101_vispr
"""

from __future__ import annotations

import ml_collections

from anonymax.configs.hmdb51_vispr import video_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return video_config("ucf101", arg, "ucf101_vispr.py")
