"""What the launchers share: one-line errors for a user's mistakes, and the default workdir."""

from __future__ import annotations

import functools
import logging
import os
import sys

# A user's mistake (a wrong config field, a missing file, a diverging run) raises one of these
# with a message naming the field or file; the launchers print that line instead of a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)


def user_errors(main):
  """Wraps a launcher's `main(argv)`: a `USER_ERRORS` exception becomes `error: <message>` on
  stderr and exit status 2 (the traceback goes to the debug log)."""

  @functools.wraps(main)
  def wrapped(argv, *args, **kwargs):
    try:
      return main(argv, *args, **kwargs)
    except USER_ERRORS as e:
      logging.debug("error", exc_info=True)
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  return wrapped


def default_workdir(config_path: str) -> str:
  """`workdirs/<config name>` for `path/to/<config name>.py[:variants]`."""
  name = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
  return os.path.join("workdirs", name)
