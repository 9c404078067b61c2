"""Local transformers oracles: LLaVA, Video-LLaVA, any image-text-to-text model from a local path.

The model and its processor are loaded with `from_pretrained` from a local directory (nothing is
downloaded); the processor's chat template builds the prompt. Inference is batched, runs under
`torch.inference_mode`, on the configured torch device, in bf16 where the device supports it.

Utility losses (per sample i with anonymized visual x_i and prompt q_i; ℓ(s) = Σ_t log p(s_t | x_i,
q_i, s_<t) is the teacher-forced log-likelihood of a continuation s after the prompt), computed by
`anonymax.utility_losses` from the ℓ this module measures (answers and options compared stripped):
  * ``"nll"``:    Σ_a w_a · (−ℓ(a) / |a|), over the distinct reference answers a with weights
                  w_a = count(a) / #answers (``answer_weighting="frequency"``), or w = 1 on the most
                  common answer (``"most_common"``). |a| is the answer's token count
                  (``nll_reduction="mean"``, the default: comparable across answer lengths) or 1
                  (``"sum"``); `answer_weights` and `expected_nll`.
  * ``"choice"``: −log softmax_c(ℓ(c))[c*] over the options c of `Query.choices` (whole option
                  sequences, not first tokens), c* the most common reference answer among them;
                  `majority_choice` and `floored_choice_nll` (no floor).
  * ``"vqa"``:    1 − VQA accuracy of the greedy answer (≤ `max_new_tokens` tokens), official or
                  free-form (`anonymax.answer_scoring`); `vqa_loss`.

The question reaches the model through `prompt_template` (`anonymax.prompts`: e.g. LLaVA-1.5's
short-answer instruction); a query it cannot render (``{choices}`` without options) is invalid.

A continuation follows the rendered prompt after a space unless the prompt already ends in
whitespace; its tokens are those of prompt + continuation beyond the prompt's own tokens.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import inspect
import logging
import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import (
  AutoImageProcessor,
  AutoModelForImageTextToText,
  AutoProcessor,
  AutoTokenizer,
)

from anonymax import prompts, utility_losses
from anonymax.answer_scoring import check_scoring
from anonymax.oracles.base import (
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  Oracle,
  OracleOutput,
  Query,
  check_loss_name,
  to_uint8,
)

log = logging.getLogger(__name__)

_FAILED = object()  # a row whose model call raised

ANSWER_WEIGHTINGS = utility_losses.ANSWER_WEIGHTINGS
NLL_REDUCTIONS = ("mean", "sum")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _resolve_device(device: str) -> torch.device:
  try:
    dev = torch.device(device)
  except (RuntimeError, TypeError) as e:
    raise ValueError(f"oracle.hf.device={device!r}: not a torch device ({e})") from None
  if dev.type == "cuda" and not torch.cuda.is_available():
    raise ValueError(f"oracle.hf.device={device!r}: CUDA is not available on this machine")
  return dev


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
  """'auto': bf16 on a GPU that supports it, else float32 (bf16 on CPU is slow and coarse)."""
  if dtype == "auto":
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
      return torch.bfloat16
    return torch.float32
  if dtype not in _DTYPES:
    raise ValueError(f"oracle.hf.dtype={dtype!r}: must be 'auto' or one of {tuple(_DTYPES)}")
  return _DTYPES[dtype]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
  n = 0
  for x, y in zip(a, b, strict=False):
    if x != y:
      break
    n += 1
  return n


class FramewiseProcessor:
  """Tokenizer + image processor standing in for a LLaVA-family processor that cannot be built.

  Video-LLaVA's processor needs torchvision for its video processor; without it, clips are
  processed frame by frame with the image processor and the ``<video>`` placeholder is expanded to
  T · (patches + CLS) tokens, the count the model's video tower produces per clip.
  """

  def __init__(self, path: str, config):
    self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    self.image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    self.chat_template = self.tokenizer.chat_template
    self.image_token = "<image>"
    self.video_token = "<video>"
    self._patch = int(config.vision_config.patch_size)
    self._drop_cls = getattr(config, "vision_feature_select_strategy", "default") == "default"

  def _pixels(self, images: list) -> torch.Tensor:
    out = self.image_processor(images=images, return_tensors="pt")
    # Video-LLaVA's image processor still names them "pixel_values_images" by default.
    return out["pixel_values"] if "pixel_values" in out else out["pixel_values_images"]

  def apply_chat_template(self, messages, **kwargs) -> str:
    return self.tokenizer.apply_chat_template(messages, **kwargs)

  def __call__(self, *, text, images=None, videos=None, return_tensors="pt", padding=True):
    if videos is not None:
      t = len(videos[0])
      frames = [f for clip in videos for f in clip]
      pixels = self._pixels(frames)
      per_frame = (pixels.shape[-2] // self._patch) * (pixels.shape[-1] // self._patch) + 1
      text = [s.replace(self.video_token, self.video_token * (per_frame * t)) for s in text]
      out = {"pixel_values_videos": pixels.reshape(len(videos), t, *pixels.shape[1:])}
    else:
      pixels = self._pixels(images)
      per_image = (pixels.shape[-2] // self._patch) * (pixels.shape[-1] // self._patch)
      per_image += 0 if self._drop_cls else 1
      text = [s.replace(self.image_token, self.image_token * per_image) for s in text]
      out = {"pixel_values": pixels}
    out.update(self.tokenizer(text, return_tensors=return_tensors, padding=padding))
    return out


class HFOracle(Oracle):
  """A local transformers image-text-to-text model as a black-box oracle.

  Example:
    >>> oracle = HFOracle("/models/llava-1.5-7b-hf", loss="nll", device="cuda")
    >>> out = oracle.query(anonymized_uint8, queries)   # losses, status, answers

  `OracleOutput.answers` holds the generated text ("vqa"), the most likely option ("choice"), or
  "" ("nll", which generates nothing).

  Attributes:
    name: "hf:<model dir basename>:<loss settings>:<dtype>" (cache keys, reports).
    loss: the utility loss `query` returns.
    stats: running `OracleStats` (calls = samples scored, prompt/completion token counts).
    video: whether visuals are clips [N, T, H, W, 3] (else images [N, H, W, 3]).
  """

  def __init__(
    self,
    model_path: str,
    *,
    loss: str = "nll",
    video: bool | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    batch_size: int = 8,
    max_new_tokens: int = 10,
    answer_weighting: str = "frequency",
    nll_reduction: str = "mean",
    system_prompt: str | None = None,
    prompt_template: str | None = None,
    answer_scoring: str = "official",
  ):
    """Loads the model and processor from `model_path`.

    Args:
      model_path: a local directory written by `save_pretrained` (config.json, weights, processor).
      loss: "nll", "choice" or "vqa" (see the module docstring).
      video: clips instead of images; None: clips iff the model config has a video token.
      device: torch device, e.g. "cpu", "cuda", "cuda:1".
      dtype: "auto" (bf16 where supported, else float32), "float32", "bfloat16" or "float16".
      batch_size: sequences per forward pass (one per answer/option, so a "choice" sample with
        51 options takes 51 rows).
      max_new_tokens: generation length for the "vqa" loss.
      answer_weighting: "frequency" or "most_common" (the "nll" loss).
      nll_reduction: "mean" (per answer token) or "sum" (the "nll" loss).
      system_prompt: optional system message put before every question.
      prompt_template: how each question is worded for the model (`anonymax.prompts`); None
        sends it as it is.
      answer_scoring: "official" or "free_form", the VQA accuracy of the "vqa" loss.

    Raises:
      ValueError: a missing/unloadable model path or a bad setting, naming it.
    """
    check_loss_name(loss)  # first: a bad loss is named before anything is loaded
    if answer_weighting not in ANSWER_WEIGHTINGS:
      raise ValueError(
        f"oracle.hf.answer_weighting={answer_weighting!r}: must be one of {ANSWER_WEIGHTINGS}"
      )
    if nll_reduction not in NLL_REDUCTIONS:
      raise ValueError(
        f"oracle.hf.nll_reduction={nll_reduction!r}: must be one of {NLL_REDUCTIONS}"
      )
    self.template = prompts.PromptTemplate.parse(prompt_template, "oracle.hf.prompt_template")
    self.answer_scoring = check_scoring(answer_scoring)
    if batch_size < 1 or max_new_tokens < 1:
      raise ValueError(
        f"oracle.hf.batch_size={batch_size}, max_new_tokens={max_new_tokens}: need >= 1"
      )
    path = os.path.abspath(os.path.expanduser(str(model_path)))
    if not os.path.isfile(os.path.join(path, "config.json")):
      raise ValueError(
        f"oracle.hf.model_path={str(model_path)!r}: no local model there (no config.json); "
        "give a directory written by save_pretrained"
      )
    self.device = _resolve_device(device)
    self.dtype = _resolve_dtype(dtype, self.device)
    self.batch_size = int(batch_size)
    self.max_new_tokens = int(max_new_tokens)
    self.answer_weighting = answer_weighting
    self.nll_reduction = nll_reduction
    self.system_prompt = system_prompt
    details = {
      "nll": f"nll-{answer_weighting}-{nll_reduction}",
      "choice": "choice",
      "vqa": f"vqa-greedy{max_new_tokens}" + ("" if answer_scoring == "official" else "-free_form"),
    }[loss]
    name = f"hf:{os.path.basename(path)}:{details}:{str(self.dtype).removeprefix('torch.')}"
    if system_prompt:
      name += ":sys-" + hashlib.sha256(system_prompt.encode()).hexdigest()[:8]
    if self.template.text is not None:
      name += ":prompt-" + self.template.signature  # answers to other wordings must not mix
    super().__init__(name=name, loss=loss)
    try:
      self.model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=self.dtype, local_files_only=True
      )
    except Exception as e:  # noqa: BLE001 — any loading failure is a bad model path.
      raise ValueError(
        f"oracle.hf.model_path={str(model_path)!r}: cannot load an image-text-to-text model "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
      ) from None
    self.model.to(self.device).eval()
    self.processor = self._load_processor(path, model_path)
    config = self.model.config
    has_video = getattr(config, "video_token_index", getattr(config, "video_token_id", None))
    self.video = has_video is not None if video is None else bool(video)
    if self.video and has_video is None:
      raise ValueError(f"oracle.hf.video=True but {str(model_path)!r} has no video token")
    tokenizer = self.processor.tokenizer
    if tokenizer.pad_token_id is None:
      tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    # Placeholders must never be generated: they would ask for a visual that is not there.
    self._suppress = [
      i
      for i in (getattr(config, "image_token_index", None), has_video)
      if isinstance(i, int) and i >= 0
    ]
    forward_args = inspect.signature(self.model.forward).parameters
    self._trim_logits = "logits_to_keep" in forward_args
    self._render = functools.lru_cache(maxsize=4096)(self._render_prompt)

  def _load_processor(self, path: str, model_path: str):
    try:
      return AutoProcessor.from_pretrained(path, local_files_only=True)
    except Exception as first:  # noqa: BLE001 — e.g. Video-LLaVA's processor without torchvision.
      try:
        return FramewiseProcessor(path, self.model.config)
      except Exception:  # noqa: BLE001
        raise ValueError(
          f"oracle.hf.model_path={str(model_path)!r}: cannot load its processor "
          f"({type(first).__name__}: {str(first).splitlines()[0] if str(first) else ''})"
        ) from None

  # --- Prompts and inputs -------------------------------------------------------------------------

  def _render_prompt(self, prompt: str) -> str:
    """The chat-formatted prompt ending where the assistant's answer starts."""
    kind = "video" if self.video else "image"
    messages = []
    if self.system_prompt:
      messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
    messages.append({"role": "user", "content": [{"type": kind}, {"type": "text", "text": prompt}]})
    if getattr(self.processor, "chat_template", None):
      return self.processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
      )
    # No template saved with the model: the LLaVA-1.5 conversation format.
    token = getattr(self.processor, f"{kind}_token", f"<{kind}>")
    system = f"{self.system_prompt} " if self.system_prompt else ""
    return f"{system}USER: {token}\n{prompt} ASSISTANT:"

  def _encode(self, texts: list[str], visuals: list, padding_side: str) -> dict:
    """Tokenizes `texts` with their visuals (placeholders expanded) into device tensors."""
    self.processor.tokenizer.padding_side = padding_side
    kw = {"videos": visuals} if self.video else {"images": visuals}
    enc = self.processor(text=texts, return_tensors="pt", padding=True, **kw)
    out = {}
    for k, v in dict(enc).items():
      if isinstance(v, torch.Tensor):
        v = v.to(self.device)
        out[k] = v.to(self.dtype) if torch.is_floating_point(v) else v
    return out

  def _to_model_visuals(self, visuals: np.ndarray) -> list:
    """uint8 [N, H, W, 3] → PIL images; uint8 [N, T, H, W, 3] → uint8 [T, H, W, 3] arrays."""
    if self.video:
      if isinstance(self.processor, FramewiseProcessor):
        return [[Image.fromarray(f) for f in clip] for clip in visuals]
      return [np.ascontiguousarray(clip) for clip in visuals]
    return [Image.fromarray(img) for img in visuals]

  def _continuation_length(self, prompt: str, full: str) -> int:
    tok = self.processor.tokenizer
    p, f = tok(prompt)["input_ids"], tok(full)["input_ids"]
    return len(f) - _common_prefix(p, f)

  @staticmethod
  def _join(prompt: str, continuation: str) -> str:
    return prompt + ("" if prompt[-1:].isspace() else " ") + continuation

  # --- Model calls, in chunks of `batch_size` rows ------------------------------------------------

  def _chunked(self, fn: Callable, rows: list, visuals: list) -> list:
    """Applies `fn` to `batch_size` rows at a time; a failing chunk is retried row by row.

    A row whose own call raises gets `_FAILED` (its sample is then STATUS_FAILED).
    """
    results: list = []
    for start in range(0, len(rows), self.batch_size):
      chunk = rows[start : start + self.batch_size]
      try:
        results.extend(fn(chunk, visuals))
        continue
      except Exception as e:  # noqa: BLE001 — a bad sample must not fail its neighbours.
        log.warning("%s: batch of %d failed (%s: %s)", self.name, len(chunk), type(e).__name__, e)
      for row in chunk:
        try:
          results.extend(fn([row], visuals))
        except Exception as e:  # noqa: BLE001
          log.warning("%s: sample %d failed (%s: %s)", self.name, row[0], type(e).__name__, e)
          results.append(_FAILED)
    return results

  @torch.inference_mode()
  def _loglik(self, rows: list, visuals: list) -> list[tuple[float, int]]:
    """(ℓ(s), |s|) for rows (sample, prompt, s), ℓ(s) = Σ_t log p(s_t | visual, prompt, s_<t)."""
    fulls = [self._join(p, c) for _, p, c in rows]
    lengths = [self._continuation_length(p, f) for (_, p, _), f in zip(rows, fulls, strict=True)]
    enc = self._encode(fulls, [visuals[i] for i, _, _ in rows], padding_side="right")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    seq = ids.shape[1]
    ends = mask.sum(1).tolist()  # right padding: the real tokens are [0, end)
    # Only the positions predicting continuation tokens are needed: keep the last `keep` logits.
    first = min(e - n - 1 for e, n in zip(ends, lengths, strict=True))
    keep = seq - max(first, 0)
    extra = {"logits_to_keep": keep} if self._trim_logits else {}
    logits = self.model(**enc, **extra).logits
    offset = seq - logits.shape[1]
    self.stats.prompt_tokens += int(mask.sum())
    out = []
    for b, (end, n) in enumerate(zip(ends, lengths, strict=True)):
      if n <= 0 or end - n < 1:
        out.append((math.nan, 0))  # nothing to score: an empty continuation
        continue
      pos = torch.arange(end - n - 1, end - 1, device=logits.device)
      logp = torch.log_softmax(logits[b, pos - offset].float(), dim=-1)
      out.append((float(logp.gather(1, ids[b, pos + 1, None]).sum()), n))
    return out

  @torch.inference_mode()
  def _generate(self, rows: list, visuals: list) -> list[str | None]:
    """Greedy answers (None where a step's scores were non-finite)."""
    enc = self._encode([p for _, p in rows], [visuals[i] for i, _ in rows], padding_side="left")
    tok = self.processor.tokenizer
    gen = self.model.generate(
      **enc,
      do_sample=False,
      max_new_tokens=self.max_new_tokens,
      pad_token_id=tok.pad_token_id,
      suppress_tokens=self._suppress or None,
      output_logits=True,
      return_dict_in_generate=True,
    )
    new = gen.sequences[:, enc["input_ids"].shape[1] :]
    # Raw logits: the processed scores hold −inf for suppressed tokens by design.
    finite = torch.stack([torch.isfinite(s.float()).all(-1) for s in gen.logits], 1).all(1)
    self.stats.prompt_tokens += int(enc["attention_mask"].sum())
    self.stats.completion_tokens += int((new != tok.pad_token_id).sum())
    texts = tok.batch_decode(new, skip_special_tokens=True)
    return [t.strip() if ok else None for t, ok in zip(texts, finite.tolist(), strict=True)]

  # --- The Oracle interface -----------------------------------------------------------------------

  def query(self, visuals: np.ndarray, queries: Sequence[Query]) -> OracleOutput:
    """Scores N anonymized visuals (uint8 or float in [0, 1]); never raises for a bad sample."""
    start = time.perf_counter()
    n = len(queries)
    try:
      out = self._query(visuals, list(queries))
    except Exception as e:  # noqa: BLE001 — the host-callback contract: never raise.
      log.warning("%s: call failed for %d samples (%s: %s)", self.name, n, type(e).__name__, e)
      out = OracleOutput.failed(n, STATUS_FAILED)
    self.stats.calls += n
    self.stats.failures += int(np.sum(out.status != STATUS_OK))
    self.stats.seconds += time.perf_counter() - start
    return out

  def _query(self, visuals: np.ndarray, queries: list[Query]) -> OracleOutput:
    n = len(queries)
    visuals = to_uint8(np.asarray(visuals))
    rank = 5 if self.video else 4
    if visuals.ndim != rank or visuals.shape[0] != n or visuals.shape[-1] != 3:
      want = "[N, T, H, W, 3]" if self.video else "[N, H, W, 3]"
      log.warning("%s: visuals %s for %d queries, want %s", self.name, visuals.shape, n, want)
      return OracleOutput.failed(n, STATUS_INVALID)
    vis = self._to_model_visuals(visuals)
    texts = prompts.render_each(self.template, queries)
    prompt_of = {i: self._render(t) for i, t in enumerate(texts) if t is not None}
    losses = np.zeros(n, np.float32)
    status = np.array([STATUS_OK if i in prompt_of else STATUS_INVALID for i in range(n)], np.int32)
    answers = [""] * n

    if self.loss == "vqa":
      replies = self._chunked(self._generate, list(prompt_of.items()), vis)
      for i, text in zip(prompt_of, replies, strict=True):
        if text is _FAILED or text is None:
          status[i] = STATUS_FAILED if text is _FAILED else STATUS_INVALID
        else:
          answers[i] = text
          losses[i] = utility_losses.vqa_loss(text, list(queries[i].answers), self.answer_scoring)
      return OracleOutput(losses, status, answers)

    # "nll" and "choice": one row (sample, prompt, continuation) per weighted continuation.
    rows, weights, targets = [], [], []
    for i, q in enumerate(queries):
      cont, w, target = self._continuations(q) if i in prompt_of else ([], [], -1)
      if not cont:
        status[i] = STATUS_INVALID  # unrenderable, or e.g. no option of `choices` is an answer
      rows += [(i, prompt_of[i], c) for c in cont]
      weights.append(w)
      targets.append(target)
    lls = self._chunked(self._loglik, rows, vis)
    per_sample = collections.defaultdict(list)
    for (i, _, c), ll in zip(rows, lls, strict=True):
      per_sample[i].append((c, ll))
    for i, scored in per_sample.items():
      if any(ll is _FAILED for _, ll in scored):
        status[i] = STATUS_FAILED
        continue
      ll = np.array([v[0] for _, v in scored], np.float64)
      if not np.all(np.isfinite(ll)):
        status[i] = STATUS_INVALID
        continue
      if self.loss == "nll":
        lengths = [v[1] for _, v in scored] if self.nll_reduction == "mean" else None
        losses[i] = utility_losses.expected_nll(ll, weights[i], lengths)
      else:
        losses[i] = utility_losses.floored_choice_nll(ll, targets[i], floor=-math.inf)
        answers[i] = scored[int(np.argmax(ll))][0]
    losses[status != STATUS_OK] = 0.0
    return OracleOutput(losses, status, answers)

  def _continuations(self, q: Query) -> tuple[list[str], list[float], int]:
    """The continuations to score for `q`, their weights ("nll") and the target index ("choice")."""
    if self.loss == "choice":
      options = [c.strip() for c in q.choices]
      target = utility_losses.majority_choice([a.strip() for a in q.answers], options)
      if target < 0 or not all(options):
        return [], [], -1
      return options, [], target
    # Blank answers are left out: there is no continuation to score.
    weights = utility_losses.answer_weights(
      q.answers, key=lambda a: a.strip() or None, weighting=self.answer_weighting
    )
    return list(weights), list(weights.values()), -1
