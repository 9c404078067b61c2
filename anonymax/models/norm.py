"""Normalisation helpers shared by the anonymizer and the reviewer."""

from __future__ import annotations


def num_groups(groups: int, channels: int) -> int:
  """Returns the largest divisor of `channels` that is at most `groups`.

  GroupNorm needs the group count to divide the channel count; a width such as 12 with the
  default 8 groups would otherwise fail, so the request is clipped: num_groups(8, 12) = 6,
  num_groups(8, 4) = 4, num_groups(32, 2048) = 32.

  Args:
    groups: the requested number of groups (>= 1).
    channels: the channel count to normalise (>= 1).

  Returns:
    g with 1 <= g <= groups and channels % g == 0.
  """
  if groups < 1:
    raise ValueError(f"groups must be >= 1, got {groups}")
  if channels < 1:
    raise ValueError(f"channels must be >= 1, got {channels}")
  for g in range(min(groups, channels), 0, -1):
    if channels % g == 0:
      return g
  return 1  # unreachable: 1 divides every channel count
