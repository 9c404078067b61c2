"""What a paid oracle spends and may spend: token prices, budgets, and the usage file.

  cost = (prompt_tokens · price_input + completion_tokens · price_output) / 10⁶

with prices given per 1M tokens, in any currency. A `Budget` is reached once the calls paid for,
the tokens used (prompt + completion) or the cost reach its limit; an oracle then sends nothing
more and reports itself `exhausted`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence

from anonymax.types import OracleStats


@dataclasses.dataclass(frozen=True)
class Prices:
  """Prices per 1M tokens."""

  input: float = 0.0
  output: float = 0.0

  @classmethod
  def parse(cls, prices: Mapping | Sequence[float] | None, model: str) -> Prices:
    """Prices from {"input": x, "output": y}, (x, y), {model: {...}} per model, or None (free).

    Raises:
      ValueError: naming `prices` for any other shape or a negative price.
    """
    if prices is None:
      return cls()
    if isinstance(prices, Mapping) and model in prices:
      prices = prices[model]
    if isinstance(prices, Mapping):
      if set(prices) != {"input", "output"}:
        raise ValueError(
          f"prices={dict(prices)!r}: want {{'input': x, 'output': y}} per 1M tokens "
          f"(or {{{model!r}: {{...}}}})"
        )
      pin, pout = prices["input"], prices["output"]
    else:
      if len(prices) != 2:
        raise ValueError(f"prices={prices!r}: want (input, output) per 1M tokens")
      pin, pout = prices
    if pin < 0 or pout < 0:
      raise ValueError(f"prices={prices!r}: must be ≥ 0")
    return cls(float(pin), float(pout))

  def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
    """(prompt_tokens · input + completion_tokens · output) / 10⁶."""
    return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


@dataclasses.dataclass(frozen=True)
class Budget:
  """Spending limits; None is unlimited.

  Attributes:
    calls: requests paid for.
    tokens: prompt + completion tokens.
    cost: in the currency of the `Prices`.

  Raises:
    ValueError: naming `budget_<field>` when a limit is negative.
  """

  calls: int | None = None
  tokens: int | None = None
  cost: float | None = None

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if value is not None and value < 0:
        raise ValueError(f"budget_{field.name}={value}: must be ≥ 0 or None")

  def exhausted(self, stats: OracleStats) -> bool:
    """True once a limit is reached by `stats`."""
    return (
      (self.calls is not None and stats.calls >= self.calls)
      or (self.tokens is not None and stats.prompt_tokens + stats.completion_tokens >= self.tokens)
      or (self.cost is not None and stats.cost >= self.cost)
    )

  def allows(self, stats: OracleStats, in_flight: int) -> bool:
    """Whether one more request may be sent while `in_flight` others are still unanswered.

    Requests in flight count against the call limit (each will be paid), so concurrent requests
    never overshoot it; tokens and cost are known only once answered.
    """
    if self.exhausted(stats):
      return False
    return self.calls is None or stats.calls + in_flight < self.calls


def write_json(path: str, value) -> None:
  """Writes `value` as JSON to `path` atomically (a killed run leaves the previous file)."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2)
  os.replace(tmp, path)
