"""What reaches the upstream through the proxy, with the real openai client in front of it:
anonymized pixels only, no metadata, the operator's key only, and nothing private in the logs."""

from __future__ import annotations

import base64
import io
import logging

import httpx
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps, PngImagePlugin

from anonymax import methods
from anonymax.proxy.recording_upstream import STREAM_PIECES
from tests.proxy import helpers


def test_the_upstream_gets_exactly_the_methods_output_and_the_rest_unchanged(
  make_proxy, client_for, upstream
):
  raw = [helpers.photo(24, 32, seed=0), helpers.photo(17, 9, seed=1)]
  messages = [{"role": "system", "content": "Be brief."}, *helpers.chat(*map(helpers.png_url, raw))]
  answer = client_for(make_proxy()).chat.completions.create(
    model="gpt-test", messages=messages, temperature=0.25, max_tokens=7, seed=3
  )
  assert answer.choices[0].message.content == "".join(STREAM_PIECES)
  (got,) = upstream.received
  urls = got.image_urls()
  assert len(urls) == 2
  for url, image in zip(urls, raw):
    seen = helpers.pixels_of(url)
    np.testing.assert_array_equal(seen, 255 - image)  # the method's output, bit for bit
    assert not np.array_equal(seen, image)
  # Everything but the image URLs arrives as the client sent it.
  assert got.body["model"] == "gpt-test" and got.body["temperature"] == 0.25
  assert got.body["max_tokens"] == 7 and got.body["seed"] == 3
  assert got.body["messages"][0] == messages[0]
  parts = got.body["messages"][1]["content"]
  assert parts[0] == messages[1]["content"][0]
  assert [p["image_url"]["detail"] for p in parts[1:]] == ["low", "low"]


def test_a_learned_workdir_anonymizes_as_load_method_does(
  learned_workdir, make_proxy, client_for, upstream
):
  method = methods.load_method("learned", workdir=learned_workdir)
  raw = helpers.photo(40, 56, seed=2)
  client_for(make_proxy(method)).chat.completions.create(
    model="m", messages=helpers.chat(helpers.png_url(raw))
  )
  seen = helpers.pixels_of(upstream.received[0].image_urls()[0])
  np.testing.assert_array_equal(seen, method.anonymize(raw[None])[0])
  assert not np.array_equal(seen, raw)


def _jpeg_with_exif(pixels: np.ndarray, orientation: int = 1) -> bytes:
  exif = Image.Exif()
  exif[ExifTags.Base.Make] = "PrivateCam"
  exif[ExifTags.Base.Orientation] = orientation
  gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
  gps[ExifTags.GPS.GPSLatitudeRef] = "N"
  gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.5)
  gps[ExifTags.GPS.GPSLongitudeRef] = "E"
  gps[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 3.25)
  return helpers.encoded(pixels, "JPEG", exif=exif, quality=95, comment=b"at home")


def test_no_exif_and_no_gps_reach_the_upstream(make_proxy, client_for, upstream):
  jpeg = _jpeg_with_exif(helpers.smooth(32, 48))
  with Image.open(io.BytesIO(jpeg)) as sent:  # the test image does carry them
    assert sent.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
  client_for(make_proxy()).chat.completions.create(
    model="m", messages=helpers.chat(helpers.data_url(jpeg, "image/jpeg"))
  )
  url = upstream.received[0].image_urls()[0]
  assert url.startswith("data:image/jpeg;base64,")  # a JPEG stays a JPEG
  img = helpers.opened(url)
  assert img.format == "JPEG"
  assert not img.getexif() and "exif" not in img.info and "comment" not in img.info
  data = base64.b64decode(url.partition(",")[2])
  assert b"Exif" not in data and b"PrivateCam" not in data and b"at home" not in data


def test_exif_orientation_is_applied_before_anonymizing(make_proxy, client_for, upstream):
  raw = helpers.smooth(20, 36)
  jpeg = _jpeg_with_exif(raw, orientation=6)  # "rotate 90° clockwise to display"
  with Image.open(io.BytesIO(jpeg)) as sent:
    upright = np.asarray(ImageOps.exif_transpose(sent))
  assert upright.shape == (36, 20, 3)
  client_for(make_proxy()).chat.completions.create(
    model="m", messages=helpers.chat(helpers.data_url(jpeg, "image/jpeg"))
  )
  seen = helpers.pixels_of(upstream.received[0].image_urls()[0]).astype(int)
  assert seen.shape == (36, 20, 3)
  # JPEG is lossy both ways: the inverse of the upright image, up to re-encoding noise.
  assert np.abs(seen - (255 - upright.astype(int))).mean() < 3
  assert np.abs(seen - (255 - upright[::-1, ::-1].astype(int))).mean() > 30  # not upside down


def test_png_text_chunks_are_not_sent(make_proxy, client_for, upstream):
  info = PngImagePlugin.PngInfo()
  info.add_text("Location", "52.5200 N, 13.4050 E")
  info.add_itxt("Author", "Jane Doe")
  png = helpers.encoded(helpers.photo(seed=5), "PNG", pnginfo=info)
  client_for(make_proxy()).chat.completions.create(
    model="m", messages=helpers.chat(helpers.data_url(png))
  )
  img = helpers.opened(upstream.received[0].image_urls()[0])
  assert img.format == "PNG" and not img.info.get("Location") and not img.text
  data = base64.b64decode(upstream.received[0].image_urls()[0].partition(",")[2])
  assert b"Jane Doe" not in data and b"52.5200" not in data


def test_the_upstream_sees_the_operators_key_and_the_logs_show_no_secret(
  make_proxy, client_for, upstream, caplog
):
  caplog.set_level(logging.DEBUG)
  raw = helpers.photo(seed=6)
  url = helpers.png_url(raw)
  client = client_for(make_proxy())
  client.chat.completions.create(model="m", messages=helpers.chat(url))
  list(client.chat.completions.create(model="m", messages=helpers.chat(url), stream=True))
  assert len(upstream.received) == 2
  for got in upstream.received:
    assert got.headers["authorization"] == f"Bearer {helpers.UPSTREAM_KEY}"
    assert helpers.TOKEN not in str(got.headers) and helpers.TOKEN not in str(got.body)
  # The proxy's records (its own, uvicorn's, its httpx's): the test's openai client logs the
  # request it sends at DEBUG, image included, which is the client's business.
  records = [r for r in caplog.records if not r.name.startswith(("openai", "httpx2"))]
  text = "\n".join(r.getMessage() for r in records)
  assert "chat/completions bytes=" in text and "images=1 status=200" in text
  for secret in (helpers.UPSTREAM_KEY, helpers.TOKEN, "base64,", url[22:80]):
    assert secret not in text


def test_streamed_chunks_arrive_in_order(make_proxy, client_for, upstream):
  stream = client_for(make_proxy()).chat.completions.create(
    model="m", messages=helpers.chat(helpers.png_url(helpers.photo(seed=7))), stream=True
  )
  pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
  assert pieces == list(STREAM_PIECES)
  assert upstream.received[0].body["stream"] is True
  np.testing.assert_array_equal(
    helpers.pixels_of(upstream.received[0].image_urls()[0]), 255 - helpers.photo(seed=7)
  )


@pytest.mark.parametrize(
  "anonymize",
  [lambda x: x[:, :-1], lambda x: x.astype(np.float32), lambda x: 1 / 0],
  ids=["wrong shape", "wrong dtype", "raises"],
)
def test_a_broken_method_is_a_500_and_sends_nothing(make_proxy, upstream, caplog, anonymize):
  caplog.set_level(logging.ERROR, logger="anonymax.proxy")
  url = helpers.png_url(helpers.photo(seed=8))
  response = httpx.post(
    make_proxy(helpers.FakeMethod("broken", anonymize)).url + "/v1/chat/completions",
    json={"model": "m", "messages": helpers.chat(url)},
    headers={"Authorization": f"Bearer {helpers.TOKEN}"},
  )
  assert response.status_code == 500
  assert response.json()["error"]["code"] == "internal_error"
  assert upstream.received == []
  assert "internal error" in caplog.text and url[22:80] not in caplog.text
