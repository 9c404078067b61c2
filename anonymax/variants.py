"""Config variants: the ``name`` and ``name=value`` words after a config file's colon.

Every config file takes one argument string, e.g. ``configs/synthetic.py:smoke,zo=spsa``, and
declares the variants it accepts as `Variant` objects; `parse_variants` turns the string into a
dict of typed values (defaults for the ones not given) and rejects unknown names and bad values
with one line naming them:

  >>> VARIANTS = (Variant("smoke", "tiny sizes", type=bool),
  ...             Variant("zo", "zeroth-order method", default="ours", choices=("ours", "spsa")))
  >>> parse_variants("smoke,zo=spsa", VARIANTS, config_name="configs/example.py")
  {'smoke': True, 'zo': 'spsa'}
  >>> parse_variants(None, VARIANTS, config_name="configs/example.py")
  {'smoke': False, 'zo': 'ours'}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Variant:
  """One variant a config file accepts.

  Attributes:
    name: the word before ``=`` (or alone, for a flag).
    help: one line for the config file's docstring and error messages.
    type: ``bool`` (a flag: ``smoke``; ``smoke=false`` turns it off), ``str`` or ``int``.
    default: the value when the variant is not given (flags: False).
    choices: the allowed values; empty: any value of `type`.
  """

  name: str
  help: str
  type: type = str
  default: Any = None
  choices: tuple[Any, ...] = ()

  def parse(self, text: str | None, config_name: str) -> Any:
    """The typed value of ``name=text`` (``text`` None: the variant was given alone)."""
    where = f"{config_name}: variant {self.name}"
    if self.type is bool:
      if text is None or text.lower() in ("true", "1", "yes"):
        return True
      if text.lower() in ("false", "0", "no"):
        return False
      raise ValueError(f"{where}={text!r}: a flag takes no value (or true/false)")
    if text is None or text == "":
      raise ValueError(f"{where} needs a value ({self.name}=...): {self.help}")
    try:
      value = self.type(text)
    except ValueError:
      raise ValueError(f"{where}={text!r}: must be {self.type.__name__}") from None
    if self.choices and value not in self.choices:
      choices = ", ".join(str(c) for c in self.choices)
      raise ValueError(f"{where}={text!r}: must be one of {choices}")
    return value


def parse_variants(
  arg: str | None, variants: Sequence[Variant], *, config_name: str
) -> dict[str, Any]:
  """The variants of ``arg`` (comma-separated ``name`` or ``name=value``), typed.

  Args:
    arg: the string after the config file's colon, or None.
    variants: the variants the config file accepts.
    config_name: the file, for error messages (e.g. "configs/synthetic.py").

  Returns:
    {name: value} for every declared variant: the parsed value, or its default.

  Raises:
    ValueError: one line naming an unknown or repeated variant or a bad value.
  """
  declared = {v.name: v for v in variants}
  values = {
    v.name: (False if v.type is bool and v.default is None else v.default) for v in variants
  }
  seen = set()
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    name, has_value, text = part.partition("=")
    name = name.strip()
    if name not in declared:
      known = ", ".join(declared)
      raise ValueError(f"{config_name}: unknown variant {name!r}; known: {known}")
    if name in seen:
      raise ValueError(f"{config_name}: variant {name} given twice")
    seen.add(name)
    values[name] = declared[name].parse(text.strip() if has_value else None, config_name)
  return values


def describe(variants: Sequence[Variant]) -> str:
  """The variants as the lines of a docstring or --help text (name, choices, help)."""
  lines = []
  for v in variants:
    head = v.name if v.type is bool else f"{v.name}=" + ("|".join(map(str, v.choices)) or "...")
    lines.append(f"  {head:<24} {v.help}")
  return "\n".join(lines)
