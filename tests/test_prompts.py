"""Prompt templates (anonymax/prompts.py): validation, rendering, the configs' choices, and what
eval.json records of them."""

from __future__ import annotations

import pytest

from anonymax import prompts
from anonymax.configs import hmdb51_vispr, okvqa, synthetic, ucf101_vispr
from anonymax.types import Query

FIELD = "oracle.hf.prompt_template"
SPORT = Query("What sport is this?", ("tennis",) * 10)
ACTION = Query("What is the person doing?", ("run",), ("run", "brush hair", "jump"))


def test_the_short_answer_template_is_llava_1_5s():
  t = prompts.PromptTemplate.parse(prompts.VQA_SHORT_ANSWER, FIELD)
  assert t.render(SPORT) == (
    "What sport is this?\nAnswer the question using a single word or phrase."
  )
  assert not t.lists_choices


def test_the_action_template_lists_the_options():
  t = prompts.PromptTemplate.parse(prompts.ACTION_CHOICES, FIELD)
  assert t.lists_choices
  assert t.render(ACTION) == (
    "What is the person doing?\nOptions: run, brush hair, jump.\n"
    "Answer with one of the options, exactly as written."
  )


def test_no_template_sends_the_question_unchanged():
  for text in (None, ""):
    t = prompts.PromptTemplate.parse(text, FIELD)
    assert t.text is None and t.signature == "" and t.render(SPORT) == "What sport is this?"


def test_literal_braces_and_the_signature():
  t = prompts.PromptTemplate.parse("{{hint}} {question}", FIELD)
  assert t.render(SPORT) == "{hint} What sport is this?"
  other = prompts.PromptTemplate.parse("{question} ", FIELD)
  assert len(t.signature) == 8 and t.signature != other.signature
  assert t.signature == prompts.PromptTemplate.parse("{{hint}} {question}", FIELD).signature


@pytest.mark.parametrize(
  "text, message",
  [
    ("Answer briefly.", "must contain {question}"),
    ("{question} {answer}", "unknown field {answer}"),
    ("{question:>20}", "takes no format spec"),
    ("{question!r}", "takes no format spec or conversion"),
    ("{question", "literal braces"),
    ("{question} }", "literal braces"),
    (5, "must be a string"),
  ],
)
def test_bad_templates_are_one_line_errors_naming_the_field(text, message):
  with pytest.raises(ValueError, match=message) as e:
    prompts.PromptTemplate.parse(text, FIELD)
  assert str(e.value).startswith(FIELD + "=") and "\n" not in str(e.value)


def test_a_query_without_options_cannot_fill_choices():
  t = prompts.PromptTemplate.parse(prompts.ACTION_CHOICES, FIELD)
  with pytest.raises(ValueError, match="lists {choices} but 'What sport is this\\?' has none"):
    t.render(SPORT)
  # One at a time: the other query of the batch still renders.
  assert prompts.render_each(t, [SPORT, ACTION]) == [None, t.render(ACTION)]


def test_each_dataset_config_sets_its_templates_and_scoring():
  c = okvqa.get_config()
  assert c.oracle.openai.prompt_template == c.oracle.hf.prompt_template == prompts.VQA_SHORT_ANSWER
  assert c.oracle.answer_scoring == "free_form"
  for video in (hmdb51_vispr.get_config(), ucf101_vispr.get_config("oracle=openai")):
    assert video.oracle.hf.prompt_template == prompts.ACTION_CHOICES
    assert video.oracle.openai.prompt_template == prompts.ACTION_CHOICES
    assert video.oracle.answer_scoring == "free_form"
  # The synthetic benchmark asks its questions as they are, scored officially.
  s = synthetic.get_config()
  assert s.oracle.hf.prompt_template is None and s.oracle.openai.prompt_template is None
  assert s.oracle.answer_scoring == "official"
  # A template is a string field: overridable from the command line.
  c.oracle.hf.prompt_template = "Q: {question} A:"
  assert c.oracle.hf.prompt_template == "Q: {question} A:"


def test_eval_record_names_the_black_boxs_template_and_the_scoring():
  record = prompts.eval_record(okvqa.get_config(), SPORT)
  assert record == {
    "template": prompts.VQA_SHORT_ANSWER,
    "answer_scoring": "free_form",
    "lemmatizer": record["lemmatizer"],
    "example": "What sport is this?\nAnswer the question using a single word or phrase.",
  }
  assert record["lemmatizer"].startswith("simplemma ")
  video = hmdb51_vispr.get_config("oracle=openai")
  video.oracle.openai.prompt_template = "{question} ({choices})"
  assert prompts.eval_record(video, ACTION)["example"] == (
    "What is the person doing? (run, brush hair, jump)"
  )
  assert prompts.eval_record(video, SPORT)["example"] is None  # no options to list
  # The reference black box has no template; a config written before the fields has neither.
  assert prompts.eval_record(synthetic.get_config())["template"] is None
  old = okvqa.get_config()
  del old.oracle["answer_scoring"]
  del old.oracle.openai["prompt_template"]
  assert prompts.eval_record(old) == {
    "template": None,
    "answer_scoring": "official",
    "lemmatizer": record["lemmatizer"],
  }
