"""An ASGI app served by uvicorn in a background thread, for tests and benchmarks.

with serve_in_thread(app) as running:   # port 0: a free port, read back once bound
  httpx.get(running.url + "/healthz")
"""

from __future__ import annotations

import threading
import time

import uvicorn


class Running:
  """A uvicorn server running in a daemon thread.

  Attributes:
    host, port: where it listens (the real port, also when 0 was asked for).
    url: "http://host:port".
    server: the `uvicorn.Server`.
  """

  def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int):
    self.server = server
    self.thread = thread
    self.host = host
    self.port = port
    self.url = f"http://{host}:{port}"

  def close(self, timeout_s: float = 10.0) -> None:
    """Stops accepting, lets requests in flight finish (up to `timeout_s`), and joins."""
    self.server.should_exit = True
    self.thread.join(timeout_s)

  def __enter__(self) -> Running:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def serve_in_thread(
  app, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0
) -> Running:
  """Starts `app` on uvicorn in a daemon thread and returns once it accepts connections.

  uvicorn leaves the logging configuration alone (``log_config=None``), so tests can capture the
  app's log records as the process's own.

  Raises:
    RuntimeError: the server did not start within `timeout_s` (e.g. the port is taken).
  """
  config = uvicorn.Config(
    app,
    host=host,
    port=port,
    log_config=None,
    access_log=False,
    lifespan="on",
    timeout_graceful_shutdown=5,
  )
  server = uvicorn.Server(config)
  failure: list[BaseException] = []

  def run():
    try:
      server.run()
    except BaseException as e:  # noqa: BLE001 — uvicorn exits the thread with SystemExit on failure
      failure.append(e)

  thread = threading.Thread(target=run, name=f"uvicorn:{port}", daemon=True)
  thread.start()
  deadline = time.monotonic() + timeout_s
  while not server.started:
    if failure or not thread.is_alive() or time.monotonic() > deadline:
      server.should_exit = True
      raise RuntimeError(
        f"the server on {host}:{port} did not start ({failure[0]!r})"
        if failure
        else f"the server on {host}:{port} did not start"
      )
    time.sleep(0.005)
  bound = server.servers[0].sockets[0].getsockname()
  return Running(server, thread, host, bound[1])
