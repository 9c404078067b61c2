"""What /metrics reports: requests, images, refusals by reason, upstream errors, added latency.

Updated only from the event loop (no locks needed). The latency figures cover the most recent
`WINDOW` images, so a long-running proxy reports its current behaviour and its memory stays flat.
"""

from __future__ import annotations

import collections

import numpy as np

WINDOW = 10_000


class Metrics:
  """Counters and a window of per-image added latencies."""

  def __init__(self):
    self.reset()

  def reset(self) -> None:
    """Everything back to zero (e.g. after a warm-up)."""
    self.requests = 0
    self.images = 0
    self.rejected: collections.Counter[str] = collections.Counter()
    self.upstream_errors: collections.Counter[str] = collections.Counter()
    self._added_ms: collections.deque[float] = collections.deque(maxlen=WINDOW)

  def anonymized(self, images: int, seconds: float) -> None:
    """`images` images anonymized in `seconds` (the proxy's time before forwarding)."""
    self.images += images
    if images:
      self._added_ms.extend([1000.0 * seconds / images] * images)

  def snapshot(self) -> dict:
    """JSON-able: {"requests", "images", "rejected": {"total", "by_reason"}, "upstream_errors":
    {"total", "by_reason"}, "added_ms_per_image": {"count", "mean", "p50", "p95"}}."""
    added = np.asarray(self._added_ms, np.float64)
    latency = {"count": int(added.size), "mean": None, "p50": None, "p95": None}
    if added.size:
      latency.update(
        mean=round(float(added.mean()), 3),
        p50=round(float(np.percentile(added, 50)), 3),
        p95=round(float(np.percentile(added, 95)), 3),
      )
    return {
      "requests": self.requests,
      "images": self.images,
      "rejected": {"total": sum(self.rejected.values()), "by_reason": dict(self.rejected)},
      "upstream_errors": {
        "total": sum(self.upstream_errors.values()),
        "by_reason": dict(self.upstream_errors),
      },
      "added_ms_per_image": latency,
    }
