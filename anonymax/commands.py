"""The `anonymax` command (also `python -m anonymax`): `anonymax serve ...` starts the proxy.

Training, evaluation and file anonymization stay in `launch/` (they take absl flags and configs).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: anonymax serve [flags]   (anonymax serve --help lists them)

  serve   an OpenAI-compatible proxy that anonymizes every image of every request
"""


def main(argv: Sequence[str] | None = None) -> None:
  """Dispatches `argv` (default: sys.argv[1:]) to its subcommand; exit 2 with the usage if none."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(USAGE, end="", file=sys.stdout if argv else sys.stderr)
    raise SystemExit(0 if argv else 2)
  name, rest = argv[0], argv[1:]
  if name == "serve":
    from anonymax.proxy import command  # noqa: PLC0415 — only this subcommand needs uvicorn

    command.main(rest)
    return
  print(f"error: unknown command {name!r}\n{USAGE}", end="", file=sys.stderr)
  raise SystemExit(2)
