"""Black-box MLLM oracles behind one base class (see `base.Oracle`)."""

from anonymax.oracles.base import (
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  UTILITY_LOSSES,
  Oracle,
  OracleOutput,
  OracleStats,
  Query,
  to_uint8,
)
