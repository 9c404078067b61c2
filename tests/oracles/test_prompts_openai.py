"""The configured prompt templates and answer scoring reach the `openai` oracle, end to end
through the official client and a local OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest

from anonymax import black_boxes, prompts
from anonymax.configs import hmdb51_vispr, okvqa
from anonymax.oracles import server as server_lib
from anonymax.oracles.base import STATUS_INVALID, STATUS_OK, Query
from anonymax.oracles.openai import OpenAIOracle

KEY = "sk-test-prompts"
COLOURS = ("red", "green", "blue")


class SentenceAnswerer:
  """Replies in a sentence, as a chat model does: "<prefix> <dominant colour>." (the prompt is
  recorded by the server, not read)."""

  def __init__(self, prefix: str):
    self.colours = server_lib.ColourAnswerer()
    self.prefix = prefix

  def answer(self, visuals, prompts, top_k=5):
    return [
      [(f"{self.prefix} {c}.", lp) for c, lp in row]
      for row in self.colours.answer(visuals, prompts, top_k)
    ]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
  monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def serve():
  started = []

  def start(answerer=None):
    srv, url = server_lib.serve(answerer or server_lib.ColourAnswerer(), api_key=KEY)
    started.append(srv)
    return srv, url

  yield start
  for srv in started:
    srv.close()


@pytest.fixture
def oracle_at():
  made = []

  def make(url, **kwargs):
    oracle = OpenAIOracle("prompt-test", base_url=url, backoff=0.01, timeout=5.0, **kwargs)
    made.append(oracle)
    return oracle

  yield make
  for oracle in made:
    oracle.close()


def _red(n):
  """n images whose dominant colour is red (the answerers reply "red")."""
  visuals = np.zeros((n, 4, 4, 3), np.uint8)
  visuals[..., 0] = 250
  return visuals


def test_the_question_is_sent_worded_by_the_template(serve, oracle_at):
  srv, url = serve()
  oracle = oracle_at(url, loss="vqa", prompt_template=prompts.VQA_SHORT_ANSWER)
  out = oracle.query(_red(1), [Query("What colour is it?", ("red",) * 10)])
  assert out.status.tolist() == [STATUS_OK] and out.losses.tolist() == [0.0]
  (request,) = srv.received
  want = "What colour is it?\nAnswer the question using a single word or phrase."
  assert request["texts"] == [want]  # one text part, before the image
  content = request["body"]["messages"][0]["content"]
  assert [p["type"] for p in content] == ["text", "image_url"]


def test_choice_options_are_listed_once(serve, oracle_at):
  srv, url = serve()
  query = Query("What colour is it?", ("red",), COLOURS)
  listed = oracle_at(url, loss="choice", prompt_template="{question} Options: {choices}.")
  unlisted = oracle_at(url, loss="choice", prompt_template=prompts.VQA_SHORT_ANSWER)
  a = listed.query(_red(1), [query])
  b = unlisted.query(_red(1), [query])
  first, second = srv.received
  # The template lists the options: no second list after the image.
  assert first["texts"] == ["What colour is it? Options: red, green, blue."]
  # It does not: the oracle's own options part follows the image, as without a template.
  assert second["texts"] == [
    "What colour is it?\nAnswer the question using a single word or phrase.",
    "Answer with exactly one of: red, green, blue.",
  ]
  # The colour answerer ignores the prompt: the same first-token log-probs, the same loss.
  assert a.status.tolist() == b.status.tolist() == [STATUS_OK]
  np.testing.assert_allclose(a.losses, b.losses, rtol=1e-6)
  assert 0.0 < a.losses[0] < 1.0


def test_a_query_the_template_cannot_render_is_invalid_and_never_sent(serve, oracle_at):
  srv, url = serve()
  oracle = oracle_at(url, loss="vqa", prompt_template=prompts.ACTION_CHOICES)
  queries = [Query("What colour?", ("red",)), Query("What colour?", ("red",), COLOURS)]
  out = oracle.query(_red(2), queries)
  assert out.status.tolist() == [STATUS_INVALID, STATUS_OK]
  assert len(srv.received) == 1 and srv.received[0]["texts"][0].startswith("What colour?\nOptions")


@pytest.mark.parametrize(
  "prefix, answers, official, free_form",
  [
    ("The picture is mostly", ("red",) * 10, 1.0, 0.0),  # "... mostly red." states "red"
    ("The picture is mostly", ("blue",) * 10, 1.0, 1.0),
    ("The picture is not", ("red",) * 10, 1.0, 1.0),  # "... not red." negates it
    ("The picture is mostly", ("red",) * 2 + ("pink",) * 8, 1.0, 1 - 0.6),  # 2 of 10 say red
  ],
)
def test_sentence_replies_are_scored_free_form(
  serve, oracle_at, prefix, answers, official, free_form
):
  srv, url = serve(SentenceAnswerer(prefix))
  query = Query("What colour is it?", answers)
  for scoring, want in (("official", official), ("free_form", free_form)):
    oracle = oracle_at(url, loss="vqa", answer_scoring=scoring)
    out = oracle.query(_red(1), [query])
    assert out.answers == [f"{prefix} red."]
    np.testing.assert_allclose(out.losses, [want], atol=1e-6)


def test_the_cache_signature_names_the_template_and_the_scoring(oracle_at):
  url = "http://127.0.0.1:9/v1"  # never contacted
  plain = oracle_at(url, loss="vqa").cache_signature
  worded = oracle_at(url, loss="vqa", prompt_template=prompts.VQA_SHORT_ANSWER).cache_signature
  scored = oracle_at(url, loss="vqa", answer_scoring="free_form").cache_signature
  choice = oracle_at(url, loss="choice", answer_scoring="free_form").cache_signature
  sig = prompts.PromptTemplate.parse(prompts.VQA_SHORT_ANSWER, "t").signature
  assert worded == plain + f";prompt={sig}" and scored == plain + ";scoring=free_form"
  assert "scoring" not in choice  # the choice loss reads no generated text


def test_bad_settings_are_one_line_errors_naming_the_field():
  with pytest.raises(ValueError, match=r"oracle.openai.prompt_template='\{choices\}'"):
    OpenAIOracle("m", prompt_template="{choices}")
  with pytest.raises(ValueError, match="oracle.answer_scoring='exact'"):
    OpenAIOracle("m", answer_scoring="exact")


def test_make_oracle_passes_each_configs_template_and_scoring():
  for config, template in (
    (okvqa.get_config(), prompts.VQA_SHORT_ANSWER),
    (hmdb51_vispr.get_config("oracle=openai"), prompts.ACTION_CHOICES),
  ):
    oracle = black_boxes.make_oracle(config)  # no workdir: no cache, nothing sent
    assert oracle.template.text == template and oracle.answer_scoring == "free_form"
    oracle.close()
