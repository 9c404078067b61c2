"""UCF101 (Soomro et al., 2012): 13,320 YouTube videos of 101 actions, three official splits.

Manual directory (from https://www.crcv.ucf.edu/data/UCF101.php, unpacked as they come):

  ========================================  ==================================================
  UCF-101/<ClassName>/<video>.avi           UCF101.rar (videos v_<ClassName>_gXX_cYY.avi)
  ucfTrainTestlist/classInd.txt             UCF101TrainTestSplits-RecognitionTask.zip
  ucfTrainTestlist/trainlist0{1,2,3}.txt
  ucfTrainTestlist/testlist0{1,2,3}.txt
  ========================================  ==================================================

classInd.txt holds "<id> <ClassName>" lines, id 1..101 in `CLASSES` order (checked). A train
list line is "<ClassName>/<video>.avi <id>" (the id must agree with the folder), a test list line
"<ClassName>/<video>.avi" (the folder gives the class); lines end in CRLF. Clips of one group
(gXX: cut from one long video) are never split between train and test. One quirk of the release
is kept as it is: the HandstandPushups folder holds v_HandStandPushups_*.avi files, and the lists
spell them that way too.

Clips and features: see `action_videos`. Labels are class ids 0..100 (classInd id − 1).
"""

from __future__ import annotations

import os

from anonymax.data import action_videos
from anonymax.data.action_videos import ActionVideoBuilder, ActionVideoConfig, Video
from anonymax.data.records import Split

__all__ = [
  "CLASSES",
  "CLASS_WORDS",
  "AnonymaxUcf101",
  "list_videos",
  "load_split",
  "make_config",
]

# classInd.txt, in order (id = index + 1).
CLASSES = (
  "ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching",
  "BaseballPitch", "Basketball", "BasketballDunk", "BenchPress", "Biking", "Billiards",
  "BlowDryHair", "BlowingCandles", "BodyWeightSquats", "Bowling", "BoxingPunchingBag",
  "BoxingSpeedBag", "BreastStroke", "BrushingTeeth", "CleanAndJerk", "CliffDiving",
  "CricketBowling", "CricketShot", "CuttingInKitchen", "Diving", "Drumming", "Fencing",
  "FieldHockeyPenalty", "FloorGymnastics", "FrisbeeCatch", "FrontCrawl", "GolfSwing", "Haircut",
  "Hammering", "HammerThrow", "HandstandPushups", "HandstandWalking", "HeadMassage", "HighJump",
  "HorseRace", "HorseRiding", "HulaHoop", "IceDancing", "JavelinThrow", "JugglingBalls",
  "JumpingJack", "JumpRope", "Kayaking", "Knitting", "LongJump", "Lunges", "MilitaryParade",
  "Mixing", "MoppingFloor", "Nunchucks", "ParallelBars", "PizzaTossing", "PlayingCello",
  "PlayingDaf", "PlayingDhol", "PlayingFlute", "PlayingGuitar", "PlayingPiano", "PlayingSitar",
  "PlayingTabla", "PlayingViolin", "PoleVault", "PommelHorse", "PullUps", "Punch", "PushUps",
  "Rafting", "RockClimbingIndoor", "RopeClimbing", "Rowing", "SalsaSpin", "ShavingBeard",
  "Shotput", "SkateBoarding", "Skiing", "Skijet", "SkyDiving", "SoccerJuggling", "SoccerPenalty",
  "StillRings", "SumoWrestling", "Surfing", "Swing", "TableTennisShot", "TaiChi", "TennisSwing",
  "ThrowDiscus", "TrampolineJumping", "Typing", "UnevenBars", "VolleyballSpiking",
  "WalkingWithDog", "WallPushups", "WritingOnBoard", "YoYo",
)  # fmt: skip
CLASS_WORDS = action_videos.class_words(CLASSES)  # "apply eye makeup", ..., "yo yo"
_CLASS_IDS = {name: i for i, name in enumerate(CLASSES)}
VIDEOS_DIR = "UCF-101"
LISTS_DIR = "ucfTrainTestlist"


def _list_file(root: str, split: str, split_number: int) -> str:
  return os.path.join(root, LISTS_DIR, f"{split}list0{split_number}.txt")


def _check_class_index(path: str) -> None:
  """classInd.txt must list `CLASSES` in order: labels are indices into it."""
  rows = [
    (n, line.split()) for n, line in enumerate(action_videos.read_lines(path), 1) if line.strip()
  ]
  if len(rows) != len(CLASSES):
    raise ValueError(f"{path}: {len(rows)} classes, expected the {len(CLASSES)} of UCF101")
  for i, (lineno, row) in enumerate(rows):
    if row != [str(i + 1), CLASSES[i]]:
      raise ValueError(f"{path}:{lineno}: {' '.join(row)!r}, expected '{i + 1} {CLASSES[i]}'")


def list_videos(root: str, split: str, split_number: int) -> list[Video]:
  """The videos of `split` (official split `split_number`) in list order, checked to exist."""
  list_path = _list_file(root, split, split_number)
  class_index = os.path.join(root, LISTS_DIR, "classInd.txt")
  action_videos.require_files(
    "ucf101",
    {
      os.path.join(root, VIDEOS_DIR): "the videos, one folder per class: unpack UCF101.rar here",
      class_index: "the class index, from UCF101TrainTestSplits-RecognitionTask.zip",
      list_path: f"the {split} list of split {split_number}, from the same zip",
    },
  )
  _check_class_index(class_index)
  videos = []
  for lineno, line in enumerate(action_videos.read_lines(list_path), 1):
    fields = line.split()
    if not fields:
      continue
    folder = fields[0].split("/")[0]
    if len(fields) > 2 or fields[0].count("/") != 1 or folder not in _CLASS_IDS:
      raise ValueError(
        f"{list_path}:{lineno}: expected '<ClassName>/<video>.avi [id]', got {line!r}"
      )
    label = _CLASS_IDS[folder]
    if len(fields) == 2 and fields[1] != str(label + 1):
      raise ValueError(
        f"{list_path}:{lineno}: class id {fields[1]} disagrees with folder {folder} (id {label + 1})"
      )
    videos.append(Video(fields[0], os.path.join(root, VIDEOS_DIR, *fields[0].split("/")), label))
  action_videos.require_videos(
    videos, list_path, "listed video(s)", f"unpack UCF101.rar into {root}"
  )
  return videos


def _new_config(split, split_number, clip_length, image_size, num_examples) -> ActionVideoConfig:
  return action_videos.new_config(
    f"UCF101 {split} list of split {split_number}, {clip_length} frames, {image_size}px",
    split=split,
    split_number=split_number,
    clip_length=clip_length,
    image_size=image_size,
    num_examples=num_examples,
  )


# The registered variants: the paper's protocol at T = 8, 112 px, official split 1.
_DEFAULT_CONFIGS = tuple(_new_config(s, 1, 8, 112, None) for s in action_videos.SPLITS)


def make_config(
  *,
  split: str = "test",
  split_number: int = 1,
  clip_length: int = 8,
  image_size: int = 112,
  num_examples: int | None = None,
) -> ActionVideoConfig:
  """A validated config named e.g. ``test_split1_clips8_s112`` (the registered instance if any)."""
  cfg = _new_config(split, split_number, clip_length, image_size, num_examples)
  return action_videos.registered(_DEFAULT_CONFIGS, cfg)


class AnonymaxUcf101(ActionVideoBuilder):
  """TFDS builder of UCF101 clips (``anonymax_ucf101``), one config per split; see the module."""

  BUILDER_CONFIGS = list(_DEFAULT_CONFIGS)
  CLASSES = CLASSES
  LAYOUT = (
    f"{VIDEOS_DIR}/<ClassName>/<video>.avi (UCF101.rar unpacked) and {LISTS_DIR}/classInd.txt, "
    f"trainlist0{{1,2,3}}.txt, testlist0{{1,2,3}}.txt "
    "(UCF101TrainTestSplits-RecognitionTask.zip unpacked), from https://www.crcv.ucf.edu/data/UCF101.php"
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put in the manual directory: {LAYOUT}."

  def list_videos(self, root: str) -> list[Video]:
    cfg = self.builder_config
    return list_videos(root, cfg.split, cfg.split_number)


def load_split(
  split: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  clip_length: int = 8,
  image_size: int = 112,
  split_number: int = 1,
  num_examples: int | None = None,
) -> Split:
  """A UCF101 split as clips uint8 [N, T, S, S, 3], built from `manual_dir` on first use.

  Args:
    split: "train" or "test", optionally sliced ("test[:100]").
    data_dir: TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    manual_dir: where the UCF101 files are (default: <data_dir>/downloads/manual).
    clip_length: T frames per clip.
    image_size: S.
    split_number: the official split, 1, 2 or 3.
    num_examples: keep this many videos spread evenly over the split (None: all).

  Returns:
    The Split: labels index `CLASSES`, queries ask for the action among `CLASS_WORDS`, privacy is
    float32 [N, 0] (UCF101 has no privacy labels).
  """
  base = split.split("[")[0]
  cfg = make_config(
    split=base,
    split_number=split_number,
    clip_length=clip_length,
    image_size=image_size,
    num_examples=num_examples,
  )
  return action_videos.load(AnonymaxUcf101, cfg, split, data_dir=data_dir, manual_dir=manual_dir)
