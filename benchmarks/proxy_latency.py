r"""The anonymizing proxy's cost: added latency per image, and throughput under concurrency.

A stand-in upstream answers every request after a fixed latency (`--latency-ms`, default 100).
The same requests, one 512×512 image each, go straight to it and through the proxy, one at a time
and then `--concurrency` (default 16) at a time, all in this run:

  added_ms_per_image = median latency through the proxy − median latency straight to the
                       upstream, both one request at a time
  speedup            = requests/s through the proxy at --concurrency ÷ at concurrency 1

  python benchmarks/proxy_latency.py                                   # --method=face-blur
  python benchmarks/proxy_latency.py --method=learned --workdir=workdirs/synthetic
  python benchmarks/proxy_latency.py --format=png --requests=64

The image is scikit-image's astronaut photo (a real face for the face methods to find; random
smooth noise without scikit-image), sent as a JPEG data URL (`--format=png`: PNG, which costs more
to decode and re-encode). The client, the upstream and the proxy share this process, each on its
own event loop and thread, so the figures include their competition for the same cores, as they
would on a small machine running an application beside its proxy. The proxy's own account of its
time per image (`/metrics`) is printed too, and the CPU time the process spent per request on
each path: on a busy machine latencies stretch with everything else that runs, while the added CPU
time per image is what the proxy costs (printed beside the method's own CPU time per image).
Last line: `added_ms_per_image=<x> speedup=<y>`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence

import httpx
import numpy as np
from PIL import Image

from anonymax import proxy
from anonymax.proxy.recording_upstream import RecordingUpstream


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    prog="python benchmarks/proxy_latency.py", description=__doc__.splitlines()[0]
  )
  p.add_argument("--method", default="face-blur", help="learned, face-blur or face-blacken")
  p.add_argument("--workdir", default=None, help="the training workdir of --method=learned")
  p.add_argument(
    "--detect-side", type=int, default=1280, help="face methods: the detection resolution"
  )
  p.add_argument("--size", type=int, default=512, help="image side in pixels")
  p.add_argument("--format", choices=("jpeg", "png"), default="jpeg", help="how images are sent")
  p.add_argument("--latency-ms", type=float, default=100.0, help="the upstream's own latency")
  p.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
  p.add_argument("--requests", type=int, default=48, help="requests per measurement")
  p.add_argument("--warmup", type=int, default=4, help="requests through the proxy before timing")
  return p.parse_args(argv)


def test_image(size: int) -> np.ndarray:
  """uint8 [size, size, 3]: the astronaut photo, or smooth noise without scikit-image."""
  try:
    from skimage import data

    img = Image.fromarray(np.ascontiguousarray(data.astronaut()))
  except ImportError:
    noise = np.random.default_rng(0).integers(0, 256, (size // 16, size // 16, 3), np.uint8)
    img = Image.fromarray(noise)
  return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))


def request_body(pixels: np.ndarray, fmt: str) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG" if fmt == "jpeg" else "PNG", quality=90)
  url = f"data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode()}"
  parts = [
    {"type": "text", "text": "Describe the scene."},
    {"type": "image_url", "image_url": {"url": url}},
  ]
  return json.dumps({"model": "m", "messages": [{"role": "user", "content": parts}]}).encode()


async def measure(
  url: str, body: bytes, *, requests: int, concurrency: int
) -> tuple[list[float], float]:
  """(each request's latency in s, requests/s) for `requests` POSTs, `concurrency` at a time."""
  headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
  limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
  latencies: list[float] = []
  async with httpx.AsyncClient(timeout=300, limits=limits) as client:
    queue = list(range(requests))

    async def worker():
      while queue:
        queue.pop()
        start = time.perf_counter()
        response = await client.post(url + "/chat/completions", content=body, headers=headers)
        latencies.append(time.perf_counter() - start)
        if response.status_code != 200:
          raise SystemExit(f"error: HTTP {response.status_code}: {response.text[:300]}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, requests / (time.perf_counter() - start)


def load(method: str, workdir: str | None, detect_side: int = 1280):
  from anonymax import methods

  try:
    return methods.load_method(method, workdir=workdir, detect_side=detect_side)
  except (ValueError, FileNotFoundError, ImportError) as e:
    raise SystemExit(f"error: {e}") from None


def timed(run) -> tuple:
  """`run()`'s result, then the CPU seconds this process spent meanwhile (in every thread: the
  client's, the upstream's and the proxy's)."""
  cpu = time.process_time()
  result = run()
  return result, time.process_time() - cpu


def report(args, rows, own: dict, method_cpu_ms: float) -> dict[str, float]:
  """Prints the table and the summary lines; returns the figures of the last line."""
  load = os.getloadavg()[0]
  print(
    f"{args.method} on {args.size}×{args.size} {args.format.upper()}, upstream latency "
    f"{args.latency_ms:g} ms, {os.cpu_count()} CPUs, load average {load:.1f}"
  )
  print(
    f"{'path':<8}{'conc.':>6}{'requests':>10}{'p50 ms':>10}{'p95 ms':>10}{'req/s':>9}{'CPU ms/req':>12}"
  )
  for path, c, latencies, rate, cpu in rows:
    ms = 1000.0 * np.asarray(latencies)
    p50, p95 = np.percentile(ms, [50, 95])
    print(
      f"{path:<8}{c:>6}{len(ms):>10}{p50:>10.1f}{p95:>10.1f}{rate:>9.1f}{1000 * cpu / len(ms):>12.1f}"
    )
  print(
    f"the proxy's own time per image (/metrics): mean {own['mean']} ms, p50 {own['p50']} ms, "
    f"p95 {own['p95']} ms"
  )
  by = {(path, c): (latencies, rate, cpu) for path, c, latencies, rate, cpu in rows}
  concurrency = max(c for _, c, *_ in rows)
  added_ms = 1000.0 * (statistics.median(by["proxy", 1][0]) - statistics.median(by["direct", 1][0]))
  added_cpu_ms = 1000.0 * (by["proxy", 1][2] - by["direct", 1][2]) / len(by["proxy", 1][0])
  speedup = by["proxy", concurrency][1] / by["proxy", 1][1]
  # CPU time is what the proxy costs whatever else the machine runs; latency depends on both.
  print(f"added CPU per image: {added_cpu_ms:.1f} ms (the method alone: {method_cpu_ms:.1f} ms)")
  print(f"added_ms_per_image={added_ms:.1f} speedup={speedup:.2f}")
  return {"added_ms_per_image": added_ms, "speedup": speedup, "added_cpu_ms": added_cpu_ms}


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
  args = parse_args(argv)
  method = load(args.method, args.workdir, args.detect_side)
  pixels = test_image(args.size)
  body = request_body(pixels, args.format)
  upstream = RecordingUpstream(latency_s=args.latency_ms / 1000.0, record=False)
  with proxy.serve_in_thread(upstream.app()) as up:
    app = proxy.create_app(method, upstream=up.url + "/v1", upstream_key="bench-key")
    with proxy.serve_in_thread(app) as prox:
      urls = {"direct": up.url + "/v1", "proxy": prox.url + "/v1"}
      warmup = min(args.warmup, args.concurrency)
      asyncio.run(measure(urls["proxy"], body, requests=args.warmup, concurrency=warmup))
      app.state.metrics.reset()  # the warm-up's compilation is not the proxy's running cost
      rows = []
      for path in ("direct", "proxy"):
        for c in (1, args.concurrency):
          run = lambda url=urls[path], c=c: asyncio.run(
            measure(url, body, requests=args.requests, concurrency=c)
          )
          (latencies, rate), cpu = timed(run)
          rows.append((path, c, latencies, rate, cpu))
      own = httpx.get(prox.url + "/metrics").json()["added_ms_per_image"]
  _, method_cpu = timed(lambda: [method.anonymize(pixels[None]) for _ in range(8)])
  return report(args, rows, own, 1000.0 * method_cpu / 8)


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main(sys.argv[1:])
