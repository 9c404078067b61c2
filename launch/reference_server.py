r"""Serves a black box over an OpenAI-compatible ``/v1/chat/completions`` endpoint until interrupted.

  OPENAI_API_KEY=local python launch/reference_server.py --port 8000 --latency-ms 200
  # then train with the config variant oracle=openai,base_url=http://127.0.0.1:8000/v1

The default answerer is the synthetic benchmark's reference black box (trained on first use, then
cached); ``--answerer colour`` serves the dominant colour of the image instead (no training). If
the variable named by --api-key-env is set, requests must carry it as a Bearer token.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Sequence

from anonymax import black_boxes
from anonymax.oracles import server


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    prog="python launch/reference_server.py",
    description="Serve a black box over an OpenAI-compatible /v1/chat/completions endpoint.",
  )
  parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
  parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
  parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency per request")
  parser.add_argument(
    "--answerer",
    choices=("reference", "colour"),
    default="reference",
    help="reference: the synthetic benchmark's black box; colour: the dominant colour",
  )
  parser.add_argument("--image-size", type=int, default=64, help="reference: image size")
  parser.add_argument("--clip-length", type=int, default=0, help="reference: frames per clip")
  parser.add_argument(
    "--cache-dir", default=None, help="reference: where the trained net is cached"
  )
  parser.add_argument(
    "--api-key-env",
    default="OPENAI_API_KEY",
    help="if this variable is set, requests must carry it as a Bearer token",
  )
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
  args = parse_args(argv)
  if args.answerer == "reference":
    answerer = black_boxes.reference_oracle(
      image_size=args.image_size, clip_length=args.clip_length, cache_dir=args.cache_dir
    )
  else:
    answerer = server.ColourAnswerer()
  chat_server, url = server.serve(
    answerer,
    host=args.host,
    port=args.port,
    api_key=os.environ.get(args.api_key_env) or None,
    latency_s=args.latency_ms / 1000.0,
    record=False,
  )
  print(f"serving {type(answerer).__name__} at {url}", flush=True)
  try:
    threading.Event().wait()
  except KeyboardInterrupt:
    chat_server.close()


if __name__ == "__main__":
  main()
