"""The `openai` oracle: any OpenAI-compatible chat-completions server as the black-box MLLM.

One sample is one chat request: the user's prompt, then the anonymized image (or every frame of a
clip) as base64 data URLs, decoded greedily (temperature 0). Requests of a batch run concurrently on
`openai.AsyncOpenAI` (at most `concurrency` in flight), so the 2B evaluations of an SPSA step cost
about one round trip instead of 2B. Works with OpenAI (GPT-4o/4.1/4V), Azure's v1 endpoint
(`https://RESOURCE.openai.azure.com/openai/v1/`), vLLM and the llama.cpp server through `base_url`.

Faults: the client retries on its own (`client_max_retries`); on top of that a backoff loop retries
429 (waiting `Retry-After` seconds when the server sends it), 5xx, timeouts, dropped connections and
malformed response bodies, `max_retries` times with exponential backoff. A sample that still fails
gets `STATUS_FAILED`; an answer that came back but cannot be scored (no text, non-finite log-probs,
correct option missing from the choices) gets `STATUS_INVALID`. Neither raises.

Utility losses and which servers support them:
  * ``"vqa"``    L = 1 − VQA-accuracy(answer text, `Query.answers`) (`utility_losses.vqa_loss`;
    official or free-form, `answer_scoring`). Every chat model.
  * ``"choice"`` L = −log( m_c / Σ_o m_o ), where m_o is the probability mass, among the first
    answer token's `top_logprobs`, of the tokens that begin option o (a token that begins several
    options shares its mass equally among them), floored at exp(`floor_logprob`); c is the correct
    option (the majority reference answer among the options). Computed by
    `utility_losses.first_token_choice_nll` with `utility_losses.correct_choice`. Needs
    `logprobs`/`top_logprobs`: OpenAI GPT-4o/4.1 family, vLLM, llama.cpp server; not the o-series
    reasoning models nor deployments that disable log-probs.
  * ``"nll"``    not supported: chat completions cannot score a given (teacher-forced) answer.

The first text part is the question worded by `prompt_template` (`anonymax.prompts`); "choice"
adds the options in a text part after the visuals unless the template lists them already. A query
the template cannot render is `STATUS_INVALID`, and no request is sent for it.

Secrets: the API key is read once from the environment (`api_key_env`) and lives only inside the
client. It never appears in `repr`, logs, `stats`, the usage file or an exception raised here.

Budget (`spending.Budget`): `budget_calls`, `budget_tokens` and `budget_cost` (in the currency of
`prices`, given per 1M input/output tokens) stop spending: once one is reached `exhausted` is True
and every further sample gets `STATUS_FAILED` without a request; the trainer checks `exhausted`
after each step and stops with a checkpoint. Usage and cost are written as JSON to `usage_path`
after every batch. Visuals are encoded by `image_urls`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence

import numpy as np
import openai

from anonymax import prompts, utility_losses
from anonymax.answer_scoring import check_scoring
from anonymax.oracles.base import (
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  Oracle,
  OracleOutput,
  Query,
  to_uint8,
)
from anonymax.oracles.image_urls import IMAGE_FORMATS, visual_data_urls
from anonymax.oracles.spending import Budget, Prices, write_json

log = logging.getLogger(__name__)

_DETAILS = ("auto", "low", "high")
# Status codes worth another try: timeout, conflict/lock, rate limit, and every server error.
_RETRY_STATUS = (408, 409, 429)


def _public_url(url: str | None) -> str | None:
  """The base URL without user info or query string (either could hold a credential)."""
  if url is None:
    return None
  parts = urllib.parse.urlsplit(url)
  host = parts.hostname or ""
  if parts.port:
    host = f"{host}:{parts.port}"
  return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _retry_after(err: Exception) -> float | None:
  """Seconds from a `Retry-After` header of the error's response, if any."""
  response = getattr(err, "response", None)
  if response is None:
    return None
  value = response.headers.get("retry-after")
  try:
    seconds = float(value)
  except (TypeError, ValueError):
    return None
  return seconds if math.isfinite(seconds) and seconds >= 0 else None


class _Secret:
  """Holds the API key so that `repr`, `vars` and pickling never show it."""

  __slots__ = ("_value",)

  def __init__(self, value: str):
    self._value = value

  def get(self) -> str:
    return self._value

  def __repr__(self) -> str:
    return "<secret>"

  def __reduce__(self):
    raise TypeError("the API key cannot be pickled or copied")


class _Malformed(Exception):
  """A 200 response whose body is not a usable chat completion."""


class OpenAIOracle(Oracle):
  """A chat-completions MLLM behind the official `openai` client (see the module docstring).

  Attributes:
    name: the model name sent to the server.
    loss: ``"vqa"`` or ``"choice"``.
    stats: running `OracleStats` (calls = 200 responses received; tokens and cost from `usage`).
    cache_signature: the decoding settings, for cache keys.
    prices: the `spending.Prices` per 1M tokens.
    budget: the `spending.Budget`; `exhausted` once it is reached.
  """

  def __init__(
    self,
    model: str,
    *,
    base_url: str | None = None,
    loss: str = "choice",
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 16,
    max_retries: int = 3,
    client_max_retries: int = 2,
    timeout: float = 30.0,
    backoff: float = 0.5,
    max_backoff: float = 60.0,
    image_format: str = "png",
    jpeg_quality: int = 90,
    detail: str = "auto",
    max_tokens: int = 16,
    top_logprobs: int = 10,
    floor_logprob: float = -20.0,
    budget_calls: int | None = None,
    budget_tokens: int | None = None,
    budget_cost: float | None = None,
    prices: Mapping | Sequence[float] | None = None,
    usage_path: str | None = None,
    prompt_template: str | None = None,
    answer_scoring: str = "official",
  ):
    """Validates the settings and reads the API key; sends nothing yet.

    Args:
      model: model name, e.g. "gpt-4o-2024-08-06" or the name a vLLM server was started with.
      base_url: the server's ``.../v1`` URL; None is OpenAI's.
      loss: the utility loss, ``"vqa"`` or ``"choice"`` (``"nll"`` is rejected).
      api_key_env: the environment variable holding the key (local servers accept any value).
      concurrency: requests in flight at once.
      max_retries: our retries of a failed request, after the client's own.
      client_max_retries: the client's built-in retries (it also honours `Retry-After`).
      timeout: seconds per request.
      backoff, max_backoff: wait before retry r is min(max_backoff, backoff·2^r)·U[0.5, 1] seconds,
        unless the server said `Retry-After` (then that, capped at max_backoff).
      image_format, jpeg_quality: how visuals are uploaded ("png" is lossless).
      detail: the image ``detail`` field, "auto", "low" or "high".
      max_tokens: the answer's length limit.
      top_logprobs: alternatives per token requested by the "choice" loss (OpenAI allows ≤ 20).
      floor_logprob: log-mass of an option absent from `top_logprobs` ("choice").
      budget_calls, budget_tokens, budget_cost: spending limits (None = unlimited).
      prices: per 1M tokens, {"input": x, "output": y}, or (x, y), or {model: {...}} per model.
      usage_path: where usage/cost JSON is written after each batch (None = not written).
      prompt_template: how each question is worded (`anonymax.prompts`); None sends it as is.
      answer_scoring: "official" or "free_form", the VQA accuracy of the "vqa" loss.
    """
    if loss == "nll":
      raise ValueError(
        "oracle.loss='nll' is not supported by the openai oracle: chat completions cannot score a "
        "teacher-forced answer; use 'vqa' or 'choice'"
      )
    super().__init__(name=model, loss=loss)
    if image_format not in IMAGE_FORMATS:
      raise ValueError(f"image_format={image_format!r}: must be one of {IMAGE_FORMATS}")
    if detail not in _DETAILS:
      raise ValueError(f"detail={detail!r}: must be one of {_DETAILS}")
    if not 1 <= jpeg_quality <= 100:
      raise ValueError(f"jpeg_quality={jpeg_quality}: must be in [1, 100]")
    for field, value in (("concurrency", concurrency), ("max_tokens", max_tokens)):
      if value < 1:
        raise ValueError(f"{field}={value}: must be ≥ 1")
    for field, value in (("max_retries", max_retries), ("client_max_retries", client_max_retries)):
      if value < 0:
        raise ValueError(f"{field}={value}: must be ≥ 0")
    if timeout <= 0:
      raise ValueError(f"timeout={timeout}: must be > 0 seconds")
    if loss == "choice" and not 1 <= top_logprobs <= 20:
      raise ValueError(f"top_logprobs={top_logprobs}: must be in [1, 20]")
    self.template = prompts.PromptTemplate.parse(prompt_template, "oracle.openai.prompt_template")
    self.answer_scoring = check_scoring(answer_scoring)
    self.budget = Budget(calls=budget_calls, tokens=budget_tokens, cost=budget_cost)
    self.prices = Prices.parse(prices, model)
    key = os.environ.get(api_key_env, "")
    if not key:
      raise ValueError(
        f"environment variable {api_key_env} is not set: export it with the API key "
        "(any non-empty value for a local server)"
      )
    self._api_key = _Secret(key)
    self.base_url = base_url
    self.api_key_env = api_key_env
    self.concurrency = concurrency
    self.max_retries = max_retries
    self.client_max_retries = client_max_retries
    self.timeout = float(timeout)
    self.backoff = float(backoff)
    self.max_backoff = float(max_backoff)
    self.image_format = image_format
    self.jpeg_quality = jpeg_quality
    self.detail = detail
    self.max_tokens = max_tokens
    self.top_logprobs = top_logprobs
    self.floor_logprob = float(floor_logprob)
    self.usage_path = usage_path
    self._in_flight = 0  # requests sent but not answered: they count against `budget.calls`
    self._loop: asyncio.AbstractEventLoop | None = None
    self._thread: threading.Thread | None = None
    self._client: openai.AsyncOpenAI | None = None
    self._semaphore: asyncio.Semaphore | None = None
    self._start_lock = threading.Lock()

  def __repr__(self) -> str:
    return (
      f"OpenAIOracle(model={self.name!r}, base_url={_public_url(self.base_url)!r}, "
      f"loss={self.loss!r}, api_key_env={self.api_key_env!r}, concurrency={self.concurrency})"
    )

  @property
  def cache_signature(self) -> str:
    """Everything besides model, prompt and image that changes the answer (for cache keys)."""
    sig = (
      f"temperature=0;max_tokens={self.max_tokens};detail={self.detail};image={self.image_format}"
    )
    if self.image_format == "jpeg":
      sig += f"@{self.jpeg_quality}"
    if self.loss == "choice":
      sig += f";top_logprobs={self.top_logprobs};floor={self.floor_logprob}"
    if self.template.text is not None:
      sig += f";prompt={self.template.signature}"
    if self.loss == "vqa" and self.answer_scoring != "official":
      sig += f";scoring={self.answer_scoring}"  # the cache stores losses
    return sig

  @property
  def exhausted(self) -> bool:
    """True once a configured budget (calls, tokens or cost) is reached."""
    return self.budget.exhausted(self.stats)

  # --- the event loop: one per oracle, on a daemon thread, so `query` works from any thread
  # (the io_callback thread included) and the client's connections are reused across calls.

  def _ensure_loop(self) -> asyncio.AbstractEventLoop:
    with self._start_lock:
      if self._loop is None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
          target=self._loop.run_forever, name="openai-oracle-loop", daemon=True
        )
        self._thread.start()
      return self._loop

  def close(self) -> None:
    """Closes the client and stops the event loop (the oracle can be used again afterwards)."""
    with self._start_lock:
      loop, thread = self._loop, self._thread
      if loop is None:
        return
      if self._client is not None:
        asyncio.run_coroutine_threadsafe(self._client.close(), loop).result()
      loop.call_soon_threadsafe(loop.stop)
      thread.join()
      loop.close()
      self._loop = self._thread = self._client = self._semaphore = None

  def __del__(self):
    # Only stop the loop: joining threads or awaiting the client here could deadlock when the
    # collector runs on the loop thread itself. The daemon thread then ends and its sockets close.
    loop = getattr(self, "_loop", None)
    if loop is not None and not loop.is_closed():
      loop.call_soon_threadsafe(loop.stop)

  # --- requests.

  def _messages(self, text: str, query: Query, urls: list[str]) -> list[dict]:
    content: list[dict] = [{"type": "text", "text": text}]
    content += [{"type": "image_url", "image_url": {"url": u, "detail": self.detail}} for u in urls]
    if self.loss == "choice" and not self.template.lists_choices:
      # The options go after the visuals, in their own text part, so that the question stays the
      # user's exact text (servers that key on the prompt, like ours in tests, see it unchanged).
      content.append(
        {
          "type": "text",
          "text": "Answer with exactly one of: " + ", ".join(query.choices) + ".",
        }
      )
    return [{"role": "user", "content": content}]

  def _request(self, text: str, query: Query, urls: list[str]) -> dict:
    kwargs = dict(
      model=self.name,
      messages=self._messages(text, query, urls),
      temperature=0.0,
      max_tokens=self.max_tokens,
    )
    if self.loss == "choice":
      kwargs.update(logprobs=True, top_logprobs=self.top_logprobs)
    return kwargs

  def _account(self, completion) -> None:
    self.stats.calls += 1
    usage = getattr(completion, "usage", None)
    if usage is not None:
      pt, ct = int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
      self.stats.prompt_tokens += pt
      self.stats.completion_tokens += ct
      self.stats.cost += self.prices.cost(pt, ct)

  def _score(self, completion, query: Query) -> tuple[float, int, str]:
    """(loss, status, answer) of one parsed completion."""
    try:
      choice = completion.choices[0]
      text = choice.message.content
    except (AttributeError, IndexError, TypeError) as e:
      raise _Malformed(f"no choices[0].message.content: {type(e).__name__}") from None
    if not isinstance(text, str):
      return 0.0, STATUS_INVALID, ""
    if self.loss == "vqa":
      loss = utility_losses.vqa_loss(text, list(query.answers), self.answer_scoring)
      return float(loss), STATUS_OK, text
    correct = utility_losses.correct_choice(query)
    if correct is None:
      log.warning("choice loss: no reference answer %r is among the query's choices", query.answers)
      return 0.0, STATUS_INVALID, text
    try:
      first = choice.logprobs.content[0]
      top = [(t.token, float(t.logprob)) for t in first.top_logprobs]
      own = float(first.logprob)
    except (AttributeError, IndexError, TypeError, ValueError):
      return 0.0, STATUS_INVALID, text  # the server sent no usable log-probs
    if not top or not all(math.isfinite(lp) for _, lp in top) or not math.isfinite(own):
      return 0.0, STATUS_INVALID, text
    loss = utility_losses.first_token_choice_nll(top, query.choices, correct, self.floor_logprob)
    return loss, STATUS_OK, text

  def _wait(self, attempt: int, err: Exception | None) -> float:
    after = _retry_after(err) if err is not None else None
    if after is not None:
      return min(after, self.max_backoff)
    return min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)

  async def _one(self, visual: np.ndarray, query: Query) -> tuple[float, int, str]:
    """One sample with retries; runs on the oracle's loop, so counters need no lock."""
    text = prompts.render_each(self.template, [query])[0]
    if text is None or self.loss == "choice" and not query.choices:
      return 0.0, STATUS_INVALID, ""
    urls = visual_data_urls(visual, self.image_format, self.jpeg_quality)
    kwargs = self._request(text, query, urls)
    status = STATUS_FAILED
    async with self._semaphore:
      for attempt in range(self.max_retries + 1):
        if not self.budget.allows(self.stats, self._in_flight):
          return 0.0, STATUS_FAILED, ""
        err: Exception | None = None
        self._in_flight += 1
        try:
          completion = await self._client.chat.completions.create(**kwargs)
        except openai.APIStatusError as e:
          if e.status_code not in _RETRY_STATUS and e.status_code < 500:
            log.warning("%s answered HTTP %d; sample failed", self.name, e.status_code)
            return 0.0, STATUS_FAILED, ""
          err, status = e, STATUS_FAILED
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
          err, status = e, STATUS_FAILED
        except Exception as e:  # noqa: BLE001 — an unparsable 200 body (e.g. broken JSON).
          self.stats.calls += 1
          err, status = e, STATUS_INVALID
        else:
          self._account(completion)
          try:
            return self._score(completion, query)
          except _Malformed as e:
            err, status = e, STATUS_INVALID
        finally:
          self._in_flight -= 1
        if attempt < self.max_retries:
          wait = self._wait(attempt, err)
          log.info(
            "%s request failed (%s), retry %d/%d in %.2fs",
            self.name,
            type(err).__name__,
            attempt + 1,
            self.max_retries,
            wait,
          )
          await asyncio.sleep(wait)
    return 0.0, status, ""

  async def _batch(self, visuals: np.ndarray, queries: Sequence[Query]):
    if self._client is None:
      # Created on the loop thread: the client's connection pool belongs to this loop.
      self._client = openai.AsyncOpenAI(
        api_key=self._api_key.get(),
        base_url=self.base_url,
        max_retries=self.client_max_retries,
        timeout=self.timeout,
      )
      self._semaphore = asyncio.Semaphore(self.concurrency)
    return await asyncio.gather(
      *(self._guarded(v, q) for v, q in zip(visuals, queries, strict=True))
    )

  async def _guarded(self, visual: np.ndarray, query: Query) -> tuple[float, int, str]:
    try:
      return await self._one(visual, query)
    except Exception as e:  # noqa: BLE001 — one odd answer must not sink the batch.
      log.warning("%s: sample failed: %s", self.name, type(e).__name__)
      return 0.0, STATUS_FAILED, ""

  def query(self, visuals: np.ndarray, queries: Sequence[Query]) -> OracleOutput:
    """Scores N anonymized visuals (uint8 or float in [0, 1]); never raises for a bad sample."""
    start = time.perf_counter()
    visuals = to_uint8(visuals)
    if len(visuals) != len(queries):
      raise ValueError(f"{len(visuals)} visuals but {len(queries)} queries")
    if visuals.ndim not in (4, 5) or visuals.shape[-1] != 3:
      raise ValueError(f"visuals of shape {visuals.shape}: want [N, H, W, 3] or [N, T, H, W, 3]")
    n = len(queries)
    if n == 0:
      return OracleOutput.failed(0)
    loop = self._ensure_loop()
    results = asyncio.run_coroutine_threadsafe(self._batch(visuals, queries), loop).result()
    losses = np.array([r[0] for r in results], np.float32)
    status = np.array([r[1] for r in results], np.int32)
    losses = np.where(status == STATUS_OK, losses, 0.0).astype(np.float32)
    self.stats.failures += int(np.sum(status != STATUS_OK))
    self.stats.seconds += time.perf_counter() - start
    self.write_usage()
    return OracleOutput(losses, status, [r[2] for r in results])

  def usage(self) -> dict:
    """Usage, cost and budget of this oracle so far (no secrets)."""
    return {
      "model": self.name,
      "base_url": _public_url(self.base_url),
      "loss": self.loss,
      **self.stats.as_dict(),
      "prices_per_1m_tokens": dataclasses.asdict(self.prices),
      "budget": dataclasses.asdict(self.budget),
      "exhausted": self.exhausted,
    }

  def write_usage(self) -> None:
    """Writes `usage()` to `usage_path` atomically (a killed run leaves the previous file)."""
    if self.usage_path:
      write_json(self.usage_path, self.usage())
