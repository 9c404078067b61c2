"""HMDB51's action classes and its video folder, shared by `hmdb51` and `pa_hmdb51`.

PA-HMDB51 annotates HMDB51 videos with HMDB51's own classes, so both datasets read the videos from
the same folder of the manual directory and label them with the same indices.
"""

from __future__ import annotations

from anonymax.data import action_videos

__all__ = ["CLASSES", "CLASS_WORDS", "VIDEOS_DIR"]

# The 51 class folder names, sorted.
CLASSES = (
  "brush_hair", "cartwheel", "catch", "chew", "clap", "climb", "climb_stairs", "dive",
  "draw_sword", "dribble", "drink", "eat", "fall_floor", "fencing", "flic_flac", "golf",
  "handstand", "hit", "hug", "jump", "kick", "kick_ball", "kiss", "laugh", "pick", "pour",
  "pullup", "punch", "push", "pushup", "ride_bike", "ride_horse", "run", "shake_hands",
  "shoot_ball", "shoot_bow", "shoot_gun", "sit", "situp", "smile", "smoke", "somersault", "stand",
  "swing_baseball", "sword", "sword_exercise", "talk", "throw", "turn", "walk", "wave",
)  # fmt: skip
CLASS_WORDS = action_videos.class_words(CLASSES)  # "brush hair", ..., "wave"
VIDEOS_DIR = "hmdb51"  # <manual dir>/hmdb51/<class>/<video>.avi
