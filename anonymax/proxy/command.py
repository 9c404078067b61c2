r"""`anonymax serve` (and `python launch/serve.py`): OpenAI's chat-completions API with every image
anonymized before it goes upstream.

  OPENAI_API_KEY=sk-... PROXY_TOKEN=local-secret anonymax serve \
      --method=face-blur --upstream=https://api.openai.com/v1 --token-env=PROXY_TOKEN --port=8000
  # then, in the application, only the base URL (and the key it sends) change:
  client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="local-secret")

The anonymizer is `--method` (`anonymax.methods`): "learned" is the anonymizer of a training
--workdir, "face-blur" / "face-blacken" obscure the faces CenterFace finds. The upstream's key is
read from the environment variable named by --upstream-key-env and never leaves for anywhere but
the upstream; clients authenticate with the token in --token-env, if given. Once the server
accepts connections it prints `listening on http://HOST:PORT` (the real port when --port=0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence

import uvicorn

from anonymax import cli, methods
from anonymax.proxy import Limits, create_app


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # a user error: one line and exit 2, as every launcher does
    raise ValueError(message)


def parse_args(
  argv: Sequence[str] | None = None, prog: str = "anonymax serve"
) -> argparse.Namespace:
  d = Limits()
  p = _Parser(
    prog=prog,
    description="An OpenAI-compatible chat-completions proxy that anonymizes every image.",
  )
  p.add_argument(
    "--method",
    default="learned",
    help="learned (a training --workdir's anonymizer), face-blur or face-blacken (default: learned)",
  )
  p.add_argument("--workdir", default=None, help="the training workdir of --method=learned")
  p.add_argument(
    "--upstream",
    required=True,
    help="the upstream API's base URL, as the openai client's base_url (https://api.openai.com/v1)",
  )
  p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
  p.add_argument(
    "--port",
    type=int,
    default=8000,
    help="port to listen on; 0 picks a free one (default: %(default)s)",
  )
  p.add_argument(
    "--upstream-key-env",
    default="OPENAI_API_KEY",
    help="the environment variable holding the upstream's API key (default: OPENAI_API_KEY)",
  )
  p.add_argument(
    "--token-env",
    default=None,
    help="an environment variable holding a token clients must send as 'Authorization: Bearer' "
    "(default: no token; anyone who can reach the port uses your upstream key)",
  )
  p.add_argument(
    "--fetch-remote-images",
    action="store_true",
    help="fetch and anonymize http(s) image URLs instead of refusing them (the proxy then makes "
    "requests wherever its clients point it: only for trusted clients)",
  )
  p.add_argument(
    "--max-body-bytes",
    type=int,
    default=d.max_body_bytes,
    help="largest request body (default: %(default)s)",
  )
  p.add_argument(
    "--max-images",
    type=int,
    default=d.max_images,
    help="most images in one request (default: %(default)s)",
  )
  p.add_argument(
    "--max-image-bytes",
    type=int,
    default=d.max_image_bytes,
    help="largest inline (data URL) image (default: %(default)s)",
  )
  p.add_argument(
    "--max-pixels",
    type=int,
    default=d.max_pixels,
    help="most pixels (width × height) in one image, checked before decoding (default: %(default)s)",
  )
  p.add_argument(
    "--remote-timeout",
    type=float,
    default=d.remote_timeout_s,
    help="seconds to fetch one remote image, redirects included (default: %(default)s)",
  )
  p.add_argument(
    "--remote-max-bytes",
    type=int,
    default=d.remote_max_bytes,
    help="largest fetched image (default: %(default)s)",
  )
  p.add_argument(
    "--upstream-timeout",
    type=float,
    default=d.upstream_timeout_s,
    help="seconds to wait for the upstream's answer (default: %(default)s)",
  )
  p.add_argument(
    "--workers",
    type=int,
    default=d.workers,
    help="requests whose images are anonymized at once (default: the number of CPUs, %(default)s)",
  )
  p.add_argument(
    "--detect-side",
    type=int,
    default=methods.DETECT_SIDE,
    help="face methods only: larger images are downscaled to this longer side for detection "
    "(faster; faces under about 10 px after it are missed; default: %(default)s)",
  )
  p.add_argument(
    "--work-size",
    type=int,
    default=None,
    help="learned only: the longer side, in pixels, at which the anonymizer works "
    "(default: 8 × the training image size)",
  )
  return p.parse_args(argv)


def _secret(env: str, what: str) -> str:
  value = os.environ.get(env, "")
  if not value:
    raise ValueError(f"the environment variable {env} ({what}) is not set")
  return value


def _bind(host: str, port: int) -> socket.socket:
  family = socket.AF_INET6 if ":" in host else socket.AF_INET
  sock = socket.socket(family, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    sock.bind((host, port))
  except OSError as e:
    sock.close()
    raise ValueError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
  sock.listen(2048)
  return sock


async def _serve(server: uvicorn.Server, sock: socket.socket, url: str) -> None:
  task = asyncio.create_task(server.serve(sockets=[sock]))
  while not server.started and not task.done():
    await asyncio.sleep(0.01)
  if server.started:
    print(f"listening on {url}", flush=True)
  await task


@cli.user_errors
def main(argv: Sequence[str] | None = None, prog: str = "anonymax serve") -> None:
  """Parses `argv` (the flags, as `--help` lists them) and serves until interrupted."""
  args = parse_args(argv, prog)
  if not args.upstream.lower().startswith(("http://", "https://")):
    raise ValueError(f"--upstream={args.upstream}: must be an http(s) URL")
  limits = Limits(
    max_body_bytes=args.max_body_bytes,
    max_images=args.max_images,
    max_image_bytes=args.max_image_bytes,
    max_pixels=args.max_pixels,
    fetch_remote_images=args.fetch_remote_images,
    remote_timeout_s=args.remote_timeout,
    remote_max_bytes=args.remote_max_bytes,
    upstream_timeout_s=args.upstream_timeout,
    workers=args.workers,
  )
  key = _secret(args.upstream_key_env, "the upstream's API key; --upstream-key-env names another")
  token = (
    _secret(args.token_env, "the clients' token, from --token-env") if args.token_env else None
  )
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  # httpx logs every URL it requests: remote image URLs can carry their own access tokens.
  logging.getLogger("httpx").setLevel(logging.WARNING)
  logging.getLogger("absl").setLevel(logging.WARNING)  # checkpoint restoring, step by step
  try:
    method = methods.load_method(
      args.method, workdir=args.workdir, work_size=args.work_size, detect_side=args.detect_side
    )
  except ImportError as e:  # a face method without its extra: the message says what to install
    raise ValueError(str(e)) from None
  if method.warning:
    print(f"warning: {method.warning}", file=sys.stderr, flush=True)
  logging.getLogger("anonymax.serve").info("method %s", method.description)
  if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
    print(
      f"warning: listening on {args.host} without --token-env: anyone who can reach it uses "
      "your upstream key",
      file=sys.stderr,
      flush=True,
    )
  app = create_app(method, upstream=args.upstream, upstream_key=key, token=token, limits=limits)
  sock = _bind(args.host, args.port)
  host, port = sock.getsockname()[:2]
  url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
  config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
  asyncio.run(_serve(uvicorn.Server(config), sock, url))
