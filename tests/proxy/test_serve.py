"""launch/serve.py as users run it: a subprocess that prints its real port once it serves."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time

import numpy as np
import openai
import pytest

from anonymax import methods
from tests.proxy import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVE = os.path.join(ROOT, "launch", "serve.py")


def _env(**extra) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PROXY_TOKEN")}
  return {**env, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT, **extra}


def _wait_for_line(proc: subprocess.Popen, pattern: str, timeout_s: float) -> re.Match:
  selector = selectors.DefaultSelector()
  selector.register(proc.stdout, selectors.EVENT_READ)
  deadline = time.monotonic() + timeout_s
  seen = []
  while time.monotonic() < deadline:
    if selector.select(timeout=0.5):
      line = proc.stdout.readline()
      if not line:
        break
      seen.append(line)
      if match := re.fullmatch(pattern, line.strip()):
        return match
  proc.kill()
  pytest.fail(f"no line {pattern!r} in {seen}; stderr: {proc.stderr.read()[-2000:]}")


def test_serve_prints_its_port_and_anonymizes(learned_workdir, upstream):
  args = [sys.executable, SERVE, f"--workdir={learned_workdir}", f"--upstream={upstream.url}"]
  args += ["--port=0", "--token-env=PROXY_TOKEN"]
  env = _env(OPENAI_API_KEY=helpers.UPSTREAM_KEY, PROXY_TOKEN=helpers.TOKEN)
  proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  try:
    match = _wait_for_line(proc, r"listening on http://127\.0\.0\.1:(\d+)", timeout_s=240)
    port = int(match.group(1))
    assert port > 0
    client = openai.OpenAI(
      base_url=f"http://127.0.0.1:{port}/v1", api_key=helpers.TOKEN, max_retries=0, timeout=120
    )
    raw = helpers.photo(40, 30, seed=21)
    answer = client.chat.completions.create(model="m", messages=helpers.chat(helpers.png_url(raw)))
    assert answer.choices[0].message.content
    (got,) = upstream.received
    assert got.headers["authorization"] == f"Bearer {helpers.UPSTREAM_KEY}"
    want = methods.load_method("learned", workdir=learned_workdir).anonymize(raw[None])[0]
    np.testing.assert_array_equal(helpers.pixels_of(got.image_urls()[0]), want)
    with pytest.raises(openai.AuthenticationError):
      openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0
      ).chat.completions.create(model="m", messages=helpers.chat(helpers.png_url(raw)))
  finally:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
  # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it.
  assert proc.returncode in (0, -signal.SIGTERM), err[-2000:]
  assert "Application shutdown complete" in err
  assert "trained on synthetic scenes" in err  # the method's warning, shown loudly
  assert "images=1 status=200" in err and "status=401" in err
  assert helpers.UPSTREAM_KEY not in out + err and helpers.TOKEN not in out + err
  assert "base64" not in out + err


@pytest.mark.parametrize(
  "args, env, message",
  [
    (
      ["--upstream=http://127.0.0.1:1/v1"],
      {"OPENAI_API_KEY": "k"},
      "error: --method=learned needs --workdir",
    ),
    (
      ["--method=face-blur", "--upstream=http://127.0.0.1:1/v1"],
      {},
      "error: the environment variable OPENAI_API_KEY",
    ),
    (
      ["--method=face-blur"],
      {"OPENAI_API_KEY": "k"},
      "error: the following arguments are required: --upstream",
    ),
    (
      ["--method=nope", "--upstream=http://127.0.0.1:1/v1"],
      {"OPENAI_API_KEY": "k"},
      "error: --method=nope: unknown",
    ),
    (
      ["--method=face-blur", "--upstream=http://127.0.0.1:1/v1", "--max-images=0"],
      {"OPENAI_API_KEY": "k"},
      "error: max_images must be positive",
    ),
  ],
)
def test_user_errors_are_one_line_and_exit_2(args, env, message):
  proc = subprocess.run(
    [sys.executable, SERVE, *args], capture_output=True, text=True, env=_env(**env), timeout=120
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().startswith(message), proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
  "argv, status, stream, text",
  [
    (["serve", "--method=face-blur"], 2, "stderr", "error: the following arguments are required"),
    (["serve", "--help"], 0, "stdout", "usage: anonymax serve"),
    ([], 2, "stderr", "usage: anonymax serve"),
    (["train"], 2, "stderr", "error: unknown command 'train'"),
  ],
)
def test_the_anonymax_command_dispatches_to_serve(argv, status, stream, text):
  # `anonymax ...` is the console script of anonymax.commands:main, as `python -m anonymax`.
  proc = subprocess.run(
    [sys.executable, "-m", "anonymax", *argv],
    capture_output=True,
    text=True,
    env=_env(OPENAI_API_KEY="k"),
    timeout=120,
  )
  assert proc.returncode == status, proc.stderr[-2000:]
  assert getattr(proc, stream).strip().startswith(text), (proc.stdout, proc.stderr)
