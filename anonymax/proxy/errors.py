"""The proxy's refusals, in the error format OpenAI's API uses, so clients report them as usual.

Every refusal is a `ProxyError` raised where the problem is found and turned into a JSON response
at the top of the handler: ``{"error": {"message", "type", "param", "code"}}``. The `code` names
the reason (it is also the key under which /metrics counts rejected requests); messages name the
offending field (`param`) but never quote a URL, an image or a key.
"""

from __future__ import annotations

from starlette.responses import JSONResponse


class ProxyError(Exception):
  """A request the proxy refuses (or an upstream it cannot reach), with its HTTP status.

  Attributes:
    status: the HTTP status of the response.
    message: one human-readable line.
    code: a short machine-readable reason, e.g. "body_too_large".
    param: the request field at fault, e.g. "messages[0].content[1].image_url.url", or None.
    type: OpenAI's error type ("invalid_request_error" for the client's mistakes).
  """

  def __init__(
    self,
    status: int,
    message: str,
    *,
    code: str,
    param: str | None = None,
    type: str = "invalid_request_error",  # noqa: A002 — the field's name in OpenAI's format.
  ):
    super().__init__(message)
    self.status = status
    self.message = message
    self.code = code
    self.param = param
    self.type = type

  def response(self) -> JSONResponse:
    return error_response(
      self.status, self.message, code=self.code, param=self.param, type=self.type
    )


def error_response(
  status: int,
  message: str,
  *,
  code: str | None,
  param: str | None = None,
  type: str = "invalid_request_error",  # noqa: A002
) -> JSONResponse:
  """A JSON error response in OpenAI's format."""
  body = {"error": {"message": message, "type": type, "param": param, "code": code}}
  return JSONResponse(body, status_code=status)
