"""Remote image URLs: refused by default; with fetch_remote_images, fetched under the size and
time limits and anonymized like inline images."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from anonymax.proxy import Limits
from tests.proxy import helpers

RAW = helpers.photo(30, 20, seed=11)


@pytest.fixture
def images_host(serve):
  """Another local app serving images: /photo.png, /big.png (over 1 kB), /slow.png (2 s), /gone,
  /redirect (to /photo.png), /loop (to itself)."""
  png = helpers.encoded(RAW)

  async def photo(_):
    return Response(png, media_type="image/png")

  async def big(_):
    return Response(b"\x89PNG" + b"\0" * 4096, media_type="image/png")

  async def slow(_):
    await asyncio.sleep(2)
    return Response(png, media_type="image/png")

  async def gone(_):
    return Response(b"no", status_code=404)

  app = Starlette(
    routes=[
      Route("/photo.png", photo),
      Route("/big.png", big),
      Route("/slow.png", slow),
      Route("/gone", gone),
      Route("/redirect", lambda _: RedirectResponse("/photo.png")),
      Route("/loop", lambda _: RedirectResponse("/loop")),
    ]
  )
  return serve(app).url


def test_remote_urls_are_refused_by_default(make_proxy, client_for, upstream, images_host):
  import openai

  with pytest.raises(openai.BadRequestError) as e:
    client_for(make_proxy()).chat.completions.create(
      model="m", messages=helpers.chat(images_host + "/photo.png")
    )
  assert e.value.status_code == 400 and e.value.body["code"] == "remote_image_refused"
  assert upstream.received == []


@pytest.mark.parametrize("path", ["/photo.png", "/redirect"])
def test_fetched_remote_images_are_anonymized(make_proxy, client_for, upstream, images_host, path):
  running = make_proxy(limits=Limits(fetch_remote_images=True))
  client_for(running).chat.completions.create(model="m", messages=helpers.chat(images_host + path))
  url = upstream.received[0].image_urls()[0]
  assert url.startswith("data:image/png;base64,")  # the upstream never sees the remote URL
  np.testing.assert_array_equal(helpers.pixels_of(url), 255 - RAW)


@pytest.mark.parametrize(
  "path, status, code",
  [
    ("/big.png", 413, "image_too_large"),
    ("/slow.png", 400, "invalid_image_url"),
    ("/gone", 400, "invalid_image_url"),
    ("/loop", 400, "invalid_image_url"),
  ],
)
def test_remote_fetches_are_bounded(
  make_proxy, client_for, upstream, images_host, path, status, code
):
  import openai

  limits = Limits(fetch_remote_images=True, remote_max_bytes=1024, remote_timeout_s=0.5)
  with pytest.raises(openai.APIStatusError) as e:
    client_for(make_proxy(limits=limits)).chat.completions.create(
      model="m", messages=helpers.chat(images_host + path)
    )
  assert e.value.status_code == status and e.value.body["code"] == code
  assert images_host not in e.value.body["message"]  # a URL may carry its own secrets
  assert upstream.received == []
