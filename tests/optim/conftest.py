"""Fixtures of the anonymax.optim tests."""

from __future__ import annotations

import contextlib

import jax
import pytest

_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration")


@contextlib.contextmanager
def _count_compilations():
  """Yields a list that collects one name per JAX trace or XLA compilation while it is open."""
  seen: list[str] = []

  def listener(event, duration_secs, **kwargs):
    del duration_secs, kwargs
    if event in _EVENTS:
      seen.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seen
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture
def count_compilations():
  """``with count_compilations() as seen: ...``: ``seen`` lists the traces and compilations."""
  return _count_compilations
