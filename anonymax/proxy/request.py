"""A chat-completions request body: parsed, checked, its images found and put back anonymized.

Only the image parts change. Every content part is inspected, and a part whose type could carry
pixels the proxy does not anonymize (a `file` part can hold a PDF full of photos; a future part
type could hold anything) is refused rather than passed on: the proxy's promise is that no raw
pixels reach the upstream, so what it does not understand does not leave.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from anonymax.proxy.errors import ProxyError

# Content part types passed on unchanged: they carry no pixels.
PASSED_PART_TYPES = ("text", "refusal", "input_audio")


@dataclasses.dataclass
class ImageRef:
  """One `image_url` part of the request.

  Attributes:
    holder: the part's ``image_url`` object, whose "url" is replaced in place.
    param: where it is, e.g. "messages[0].content[1].image_url.url" (for error messages).
  """

  holder: dict[str, Any]
  param: str

  @property
  def url(self) -> str:
    return self.holder["url"]

  @property
  def is_data(self) -> bool:
    return self.url[:5].lower() == "data:"

  @property
  def is_remote(self) -> bool:
    return self.url.split(":", 1)[0].lower() in ("http", "https")


def _refuse(message: str, param: str | None, code: str = "invalid_request") -> ProxyError:
  return ProxyError(400, message, code=code, param=param)


def _no_constants(name: str):
  # json.loads accepts NaN and Infinity, which are not JSON and would be sent on as such.
  raise ValueError(f"{name} is not valid JSON")


def parse(raw: bytes) -> tuple[dict[str, Any], list[ImageRef]]:
  """The request body as JSON, and its image parts in order.

  Raises:
    ProxyError: 400 when the body is not a JSON object with a list of message objects, or a
      content part is malformed or of a type that is not passed on.
  """
  try:
    body = json.loads(raw, parse_constant=_no_constants)
  except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
    raise _refuse("the request body is not valid JSON", None, "invalid_json") from None
  if not isinstance(body, dict):
    raise _refuse("the request body must be a JSON object", None, "invalid_json")
  messages = body.get("messages")
  if not isinstance(messages, list) or not messages:
    raise _refuse("'messages' must be a non-empty list", "messages")
  refs = []
  for i, message in enumerate(messages):
    if not isinstance(message, dict):
      raise _refuse(f"messages[{i}] must be an object", f"messages[{i}]")
    content = message.get("content")
    if content is None or isinstance(content, str):
      continue
    if not isinstance(content, list):
      raise _refuse(
        f"messages[{i}].content must be a string or a list of parts", f"messages[{i}].content"
      )
    for j, part in enumerate(content):
      refs.extend(_image_parts(part, f"messages[{i}].content[{j}]"))
  return body, refs


def _image_parts(part: Any, where: str) -> list[ImageRef]:
  if not isinstance(part, dict):
    raise _refuse(f"{where} must be an object", where)
  kind = part.get("type")
  if kind == "image_url":
    holder = part.get("image_url")
    if not isinstance(holder, dict) or not isinstance(holder.get("url"), str):
      raise _refuse(
        f"{where}.image_url must be an object with a string 'url'", f"{where}.image_url"
      )
    return [ImageRef(holder, f"{where}.image_url.url")]
  if kind in PASSED_PART_TYPES:
    return []
  shown = kind if isinstance(kind, str) and len(kind) <= 40 else "?"
  raise _refuse(
    f"{where}: content parts of type {shown!r} are not sent on by the anonymizing proxy "
    f"(accepted: image_url, {', '.join(PASSED_PART_TYPES)})",
    f"{where}.type",
    "unsupported_content_part",
  )


def dump(body: dict[str, Any]) -> bytes:
  """The (rewritten) body as compact UTF-8 JSON."""
  return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
