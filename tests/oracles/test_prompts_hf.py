"""The configured prompt templates and answer scoring reach the `hf` oracle (tiny random LLaVA)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402
from transformers import AutoProcessor, LlavaForConditionalGeneration  # noqa: E402

from anonymax import answer_scoring, black_boxes, prompts  # noqa: E402
from anonymax.configs import okvqa  # noqa: E402
from anonymax.oracles.base import STATUS_INVALID, STATUS_OK, Query  # noqa: E402
from anonymax.oracles.hf import HFOracle  # noqa: E402
from tests.oracles import tiny_hf_models as tiny  # noqa: E402

pytestmark = [pytest.mark.hf, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def llava_path(llava):
  return llava[0]


QUESTION = Query("what color is the shirt?", ("red",) * 10)


@pytest.fixture(scope="module")
def images():
  return np.random.RandomState(0).randint(0, 256, (3, 32, 32, 3)).astype(np.uint8)


def reference_loglik(path, image, text, answer):
  """Σ_t log p(a_t | "USER: <image>\\n{text} ASSISTANT:", a_<t), written out in the LLaVA-1.5
  format by hand (not through the chat template) and scored one unpadded forward pass a token."""
  enc = AutoProcessor.from_pretrained(path)(
    text=[f"USER: <image>\n{text} ASSISTANT:"], images=[Image.fromarray(image)], return_tensors="pt"
  )
  model = LlavaForConditionalGeneration.from_pretrained(path).eval()
  ids, total = enc["input_ids"][0].tolist(), 0.0
  with torch.no_grad():
    for token in [tiny.VOCAB[w] for w in answer.split()]:
      logits = model(input_ids=torch.tensor([ids]), pixel_values=enc["pixel_values"]).logits
      total += float(torch.log_softmax(logits[0, -1].double(), -1)[token])
      ids.append(token)
  return total


def test_the_template_is_what_the_model_reads(llava_path, images, monkeypatch):
  oracle = HFOracle(llava_path, loss="nll", prompt_template=prompts.VQA_SHORT_ANSWER)
  seen, encode = [], oracle._encode

  def recording_encode(texts, *args, **kwargs):  # the texts the processor tokenizes
    seen.extend(texts)
    return encode(texts, *args, **kwargs)

  monkeypatch.setattr(oracle, "_encode", recording_encode)
  out = oracle.query(images[:1], [QUESTION])
  rendered = "what color is the shirt?\nAnswer the question using a single word or phrase."
  assert seen == [f"USER: <image>\n{rendered} ASSISTANT: red"]
  want = -reference_loglik(llava_path, images[0], rendered, "red")
  np.testing.assert_allclose(out.losses, [want], rtol=1e-4)
  bare = -reference_loglik(llava_path, images[0], QUESTION.prompt, "red")
  assert abs(want - bare) > 1e-3  # the instruction changes what the model is scored on
  assert ":prompt-" in oracle.name and ":prompt-" not in HFOracle(llava_path, loss="nll").name


def test_choices_template_scores_as_the_rendered_question_and_skips_queries_without_options(
  llava_path, images
):
  action = Query("what is the person doing?", ("wave hand",), ("run", "wave hand", "sit"))
  template = prompts.PromptTemplate.parse(prompts.ACTION_CHOICES, "t")
  for loss in ("nll", "choice"):
    oracle = HFOracle(llava_path, loss=loss, prompt_template=prompts.ACTION_CHOICES)
    out = oracle.query(images[:2], [action, QUESTION])  # QUESTION has no options to list
    np.testing.assert_array_equal(out.status, [STATUS_OK, STATUS_INVALID])
    rendered = Query(template.render(action), action.answers, action.choices)
    plain = HFOracle(llava_path, loss=loss).query(images[:1], [rendered])
    np.testing.assert_allclose(out.losses[:1], plain.losses, rtol=1e-5)
    assert out.losses[1] == 0.0


def test_generated_replies_are_scored_free_form(llava_path, images):
  kwargs = dict(loss="vqa", max_new_tokens=4, prompt_template=prompts.VQA_SHORT_ANSWER)
  official = HFOracle(llava_path, **kwargs)
  free = HFOracle(llava_path, answer_scoring="free_form", **kwargs)
  assert official.name.split(":")[2] == "vqa-greedy4"
  assert free.name.split(":")[2] == "vqa-greedy4-free_form"  # cached losses must not mix
  # The first of the images whose greedy reply has several words (the tiny model's replies are
  # random word strings, some empty).
  replies = official.query(images, [QUESTION] * len(images)).answers
  i = next((i for i, r in enumerate(replies) if len(answer_scoring.words(r)) > 1), None)
  assert i is not None, f"no reply of several words among {replies}"
  image, said = images[i : i + 1], answer_scoring.words(replies[i])
  # References naming a later word of the reply: the reply states it but is not it.
  stated = [w for j, w in enumerate(said) if j > 0 and said[j - 1] not in answer_scoring.NEGATIONS]
  query = Query(QUESTION.prompt, (stated[0],) * 10)
  assert official.query(image, [query]).losses.tolist() == [1.0]
  out = free.query(image, [query])
  assert out.answers == [replies[i]] and out.losses.tolist() == [0.0]
  other = Query(QUESTION.prompt, ("zzz",) * 10)  # nothing the reply says
  assert free.query(image, [other]).losses.tolist() == [1.0]


def test_make_oracle_passes_the_configs_template_and_scoring(llava_path):
  config = okvqa.get_config(f"oracle=hf,model={llava_path},loss=vqa")
  config.oracle.hf.device = "cpu"
  oracle = black_boxes.make_oracle(config)  # no workdir: no cache
  assert isinstance(oracle, HFOracle)
  assert oracle.template.text == prompts.VQA_SHORT_ANSWER and oracle.answer_scoring == "free_form"
  config.oracle.hf.prompt_template = "{question} {answer}"
  with pytest.raises(ValueError, match="oracle.hf.prompt_template=.*unknown field {answer}"):
    black_boxes.make_oracle(config)
