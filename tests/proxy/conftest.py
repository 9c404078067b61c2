"""Fixtures: a recording upstream on 127.0.0.1, proxies in front of it, a learned workdir."""

from __future__ import annotations

import openai
import pytest

from anonymax import proxy
from anonymax.proxy.recording_upstream import RecordingUpstream
from tests.proxy import helpers


@pytest.fixture
def upstream():
  """A `RecordingUpstream`, served; `.url` is its base URL (".../v1")."""
  recorder = RecordingUpstream()
  with proxy.serve_in_thread(recorder.app()) as running:
    recorder.url = running.url + "/v1"
    yield recorder


@pytest.fixture
def serve():
  """serve(app) → a running server (closed after the test)."""
  running = []

  def start(app):
    running.append(proxy.serve_in_thread(app))
    return running[-1]

  yield start
  for r in running:
    r.close()


@pytest.fixture
def make_proxy(upstream, serve):
  """make_proxy(method=INVERT, **create_app kwargs) → the running proxy in front of `upstream`,
  with the upstream key and the client token of `helpers`."""

  def make(method=helpers.INVERT, **kwargs):
    kwargs.setdefault("token", helpers.TOKEN)
    app = proxy.create_app(
      method, upstream=upstream.url, upstream_key=helpers.UPSTREAM_KEY, **kwargs
    )
    running = serve(app)
    running.app = app
    return running

  return make


@pytest.fixture
def client_for():
  """client_for(running) → the official openai client pointed at it (no retries)."""

  def make(running, api_key=helpers.TOKEN):
    return openai.OpenAI(base_url=running.url + "/v1", api_key=api_key, max_retries=0, timeout=60)

  return make


@pytest.fixture(scope="session")
def learned_workdir(tmp_path_factory):
  return helpers.build_workdir(str(tmp_path_factory.mktemp("proxy_learned")))
