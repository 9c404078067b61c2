"""Prompt templates: how a dataset's question is put to a black box.

A template is a Python format string over two fields: ``{question}`` (`Query.prompt`, the
dataset's question) and, optionally, ``{choices}`` (`Query.choices` joined by ", "). Literal
braces are doubled. The rendered text is what the model reads as the user's turn (the oracle adds
its chat format and the visual); no template (None) sends the question as it is.

The config holds one template per oracle, set by each dataset's config
(``config.oracle.hf.prompt_template``, ``config.oracle.openai.prompt_template``):

  * `VQA_SHORT_ANSWER` (OK-VQA): LLaVA-1.5's instruction for short-answer VQA, the one its own
    VQAv2 / GQA / OK-VQA evaluation appends to each question, so the model answers "wimbledon"
    rather than a sentence;
  * `ACTION_CHOICES` (HMDB51, UCF101): the question with the class names as options, so the reply
    repeats a class name (action Top-1 matches the reply to a class name).

`eval_record` is what eval.json records of them. Nothing here imports an oracle or a dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import string
from collections.abc import Sequence

from anonymax import answer_scoring
from anonymax.types import Query

log = logging.getLogger(__name__)

VQA_SHORT_ANSWER = "{question}\nAnswer the question using a single word or phrase."
ACTION_CHOICES = (
  "{question}\nOptions: {choices}.\nAnswer with one of the options, exactly as written."
)

FIELDS = ("question", "choices")


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
  """A validated template (see the module docstring); ``text=None`` sends questions unchanged.

  Example:
    >>> t = PromptTemplate.parse(VQA_SHORT_ANSWER, "oracle.hf.prompt_template")
    >>> t.render(Query("What sport is this?", ("tennis",)))
    'What sport is this?\\nAnswer the question using a single word or phrase.'
  """

  text: str | None = None

  @classmethod
  def parse(cls, text: str | None, field: str) -> PromptTemplate:
    """Checks `text` (None or "" → no template).

    Raises:
      ValueError: naming `field` when `text` is not a string, has no ``{question}``, has a field
        other than those of `FIELDS`, a format spec or conversion, or unbalanced braces.
    """
    if text is None or text == "":
      return cls(None)
    if not isinstance(text, str):
      raise ValueError(f"{field}={text!r}: a template must be a string")
    try:
      parts = list(string.Formatter().parse(text))
    except ValueError as e:
      raise ValueError(f"{field}={text!r}: {e} (write literal braces as {{{{ and }}}})") from None
    names = [(name, spec, conv) for _, name, spec, conv in parts if name is not None]
    for name, spec, conv in names:
      if name not in FIELDS:
        raise ValueError(f"{field}={text!r}: unknown field {{{name}}}; the fields are {FIELDS}")
      if spec or conv:
        raise ValueError(f"{field}={text!r}: {{{name}}} takes no format spec or conversion")
    if "question" not in {name for name, _, _ in names}:
      raise ValueError(f"{field}={text!r}: the template must contain {{question}}")
    return cls(text)

  @property
  def lists_choices(self) -> bool:
    """Whether the rendered prompt already lists the options (``{choices}`` is used)."""
    return self.text is not None and "{choices}" in self.text

  @property
  def signature(self) -> str:
    """sha256 of the template's text, 8 hex digits ("" without a template): for cache keys and
    oracle names, so that answers to differently worded prompts never mix."""
    return "" if self.text is None else hashlib.sha256(self.text.encode()).hexdigest()[:8]

  def render(self, query: Query) -> str:
    """The text sent for `query`: ``text.format(question=prompt, choices=", ".join(choices))``.

    Raises:
      ValueError: when the template lists ``{choices}`` and the query has none.
    """
    if self.text is None:
      return query.prompt
    if self.lists_choices and not query.choices:
      raise ValueError(f"prompt template lists {{choices}} but {query.prompt!r} has none")
    return self.text.format(question=query.prompt, choices=", ".join(query.choices))


def render_each(template: PromptTemplate, queries: Sequence[Query]) -> list[str | None]:
  """`template.render` of every query, None (logged) where it cannot be rendered, so that one
  query without choices fails alone (the oracle marks it invalid) and never its batch."""
  out: list[str | None] = []
  for q in queries:
    try:
      out.append(template.render(q))
    except ValueError as e:
      log.warning("%s", e)
      out.append(None)
  return out


def template_of(config) -> str | None:
  """The template of the configured black box: ``config.oracle.<kind>.prompt_template``.

  None for the reference black box (which has none) and for configs written before the field.
  """
  section = config.oracle.get(config.oracle.kind)
  return None if section is None else section.get("prompt_template", None) or None


def eval_record(config, example: Query | None = None) -> dict:
  """What eval.json records of the prompt and of the answer scoring.

  Returns:
    {"template": the configured template (None: questions sent as they are), "example": the
    rendered prompt of `example` (when given; None if it cannot be rendered), "answer_scoring":
    ``config.oracle.answer_scoring`` ("official" for configs written before the field),
    "lemmatizer": what lemmatised the free-form replies}.
  """
  text = template_of(config)
  record = {
    "template": text,
    "answer_scoring": config.oracle.get("answer_scoring", "official"),
    "lemmatizer": answer_scoring.lemmatizer_name(),
  }
  if example is not None:
    template = PromptTemplate.parse(text, f"config.oracle.{config.oracle.kind}.prompt_template")
    record["example"] = render_each(template, [example])[0]
  return record
