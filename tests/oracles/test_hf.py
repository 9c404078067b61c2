"""Tests for the local transformers oracle, on tiny LLaVA / Video-LLaVA models built offline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
  AutoProcessor,
  LlavaForConditionalGeneration,
  VideoLlavaForConditionalGeneration,
)

from anonymax.oracles.base import (  # noqa: E402
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  Query,
  to_uint8,
)
from anonymax.oracles.bridge import OracleBridge  # noqa: E402
from anonymax.oracles.hf import HFOracle  # noqa: E402
from tests.oracles import tiny_hf_models as tiny  # noqa: E402

pytestmark = [pytest.mark.hf, pytest.mark.usefixtures("one_torch_thread")]

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
FRAMES = 3
TOKENS_PER_FRAME = (tiny.IMAGE_SIZE // tiny.PATCH_SIZE) ** 2 + 1  # patches + CLS


@pytest.fixture(scope="module")
def video_llava(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("video-llava-tiny"))
  return path, tiny.save_tiny_video_llava(path)


@pytest.fixture(scope="module")
def images():
  return np.random.RandomState(0).randint(0, 256, (4, 32, 32, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def clips():
  return np.random.RandomState(1).randint(0, 256, (2, FRAMES, 32, 32, 3)).astype(np.uint8)


QUERIES = [
  Query("what color is the shirt?", ("red",) * 6 + ("blue",) * 3 + ("green shirt",)),
  Query("what is the person doing?", ("wave hand",), ("run", "wave hand", "jump up", "sit")),
  Query("is the dog left of the cat?", ("yes", "no", "yes"), ("yes", "no")),
  Query("what?", ("clap",), ("clap", "walk")),
]


# --- Independent references: plain forward passes, one token at a time -----------------------------


def words(text):
  return [tiny.VOCAB[w] for w in text.replace("?", " ?").split()]


def image_prompt_ids(path, image, question, system=""):
  """input_ids and pixel_values of "USER: <image>\\n{question} ASSISTANT:" (the LLaVA-1.5 format)."""
  processor = AutoProcessor.from_pretrained(path)
  enc = processor(
    text=[f"{system}USER: <image>\n{question} ASSISTANT:"],
    images=[Image.fromarray(image)],
    return_tensors="pt",
  )
  return enc["input_ids"][0].tolist(), {"pixel_values": enc["pixel_values"]}


def video_prompt_ids(clip, question):
  """The same for a clip, expanded and normalised by hand (32×32 frames need no resize)."""
  ids = [tiny.BOS_ID, tiny.VOCAB["USER"], tiny.VOCAB[":"]]
  ids += [tiny.VIDEO_ID] * (TOKENS_PER_FRAME * clip.shape[0])
  ids += words(question) + [tiny.VOCAB["ASSISTANT"], tiny.VOCAB[":"]]
  pixels = ((clip.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2)
  return ids, {"pixel_values_videos": torch.from_numpy(pixels[None])}


def token_by_token_loglik(model, prompt_ids, visual_inputs, answer):
  """Σ_t log p(a_t | prompt, a_<t), one unpadded forward pass per answer token."""
  ids, total = list(prompt_ids), 0.0
  with torch.no_grad():
    for t in words(answer):
      logits = model(input_ids=torch.tensor([ids]), **visual_inputs).logits
      total += float(torch.log_softmax(logits[0, -1].double(), -1)[t])
      ids.append(t)
  return total


@pytest.fixture(scope="module")
def llava_ref(llava, images):
  """Token-by-token log-likelihoods of every answer/option of QUERIES, keyed (sample, text)."""
  path, _ = llava
  model = LlavaForConditionalGeneration.from_pretrained(path).eval()
  table = {}
  for i, q in enumerate(QUERIES):
    ids, vis = image_prompt_ids(path, images[i], q.prompt)
    for text in set(q.answers) | set(q.choices):
      table[i, text] = token_by_token_loglik(model, ids, vis, text)
  return table


def expected_nll(table, i, q, weighting="frequency", reduction="mean"):
  answers = list(q.answers)
  if weighting == "most_common":
    answers = [max(answers, key=answers.count)]
  per = {a: table[i, a] / (len(words(a)) if reduction == "mean" else 1) for a in answers}
  return -sum(per[a] for a in answers) / len(answers)


def expected_choice(table, i, q, target):
  ll = np.array([table[i, c] for c in q.choices])
  return float(np.log(np.exp(ll).sum()) - table[i, target])


# --- Loading ---------------------------------------------------------------------------------------


def test_from_pretrained_round_trip_keeps_the_weights(llava, video_llava):
  for (path, saved), cls, video in (
    (llava, LlavaForConditionalGeneration, False),
    (video_llava, VideoLlavaForConditionalGeneration, True),
  ):
    oracle = HFOracle(path)
    assert type(oracle.model) is cls
    assert oracle.video is video  # auto-detected from the config's video token
    loaded = oracle.model.state_dict()
    for k, v in saved.state_dict().items():
      assert torch.equal(loaded[k], v), k
    assert oracle.name.startswith(f"hf:{path.rstrip('/').split('/')[-1]}:nll-frequency-mean")
    assert oracle.model.dtype == torch.float32  # "auto" on CPU


def test_bad_model_path_is_one_line_value_error(tmp_path):
  missing = str(tmp_path / "no-such-model")
  with pytest.raises(ValueError, match="no-such-model") as e:
    HFOracle(missing)
  assert "\n" not in str(e.value)
  broken = tmp_path / "broken-model"
  broken.mkdir()
  (broken / "config.json").write_text(json.dumps({"model_type": "llava"}))  # no weights
  with pytest.raises(ValueError, match="broken-model") as e:
    HFOracle(str(broken))
  assert "\n" not in str(e.value)


@pytest.mark.parametrize(
  "kwargs, field",
  [
    ({"loss": "bleu"}, "loss"),
    ({"answer_weighting": "median"}, "answer_weighting"),
    ({"nll_reduction": "max"}, "nll_reduction"),
    ({"dtype": "int8"}, "dtype"),
    ({"device": "tpu:9"}, "device"),
    ({"batch_size": 0}, "batch_size"),
    ({"video": True}, "video"),  # LLaVA has no video token
    pytest.param(
      {"device": "cuda"},
      "device",
      marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available"),
    ),
  ],
)
def test_bad_settings_name_the_field(llava, kwargs, field):
  with pytest.raises(ValueError, match=field):
    HFOracle(llava[0], **kwargs)


# --- Losses against independent computations -------------------------------------------------------


@pytest.mark.parametrize(
  "weighting, reduction", [("frequency", "mean"), ("most_common", "mean"), ("frequency", "sum")]
)
def test_nll_equals_token_by_token_loglik(llava, llava_ref, images, weighting, reduction):
  oracle = HFOracle(
    llava[0], loss="nll", batch_size=3, answer_weighting=weighting, nll_reduction=reduction
  )
  out = oracle.query(images, QUERIES)
  np.testing.assert_array_equal(out.status, STATUS_OK)
  want = [expected_nll(llava_ref, i, q, weighting, reduction) for i, q in enumerate(QUERIES)]
  np.testing.assert_allclose(out.losses, want, rtol=1e-4, atol=1e-5)
  # The weighting is visible: sample 0 has three distinct answers, sample 1 only one.
  assert weighting == "most_common" or out.losses[0] != pytest.approx(-llava_ref[0, "red"])


def test_system_prompt_precedes_the_question(llava, images):
  system = "what is the color of the shirt ?"
  oracle = HFOracle(llava[0], loss="nll", system_prompt=system)
  assert oracle.name != HFOracle(llava[0], loss="nll").name  # cached answers must not mix
  out = oracle.query(images[:1], QUERIES[2:3])
  ids, vis = image_prompt_ids(llava[0], images[0], QUERIES[2].prompt, system=system + " ")
  model = LlavaForConditionalGeneration.from_pretrained(llava[0]).eval()
  want = (
    -(
      2 * token_by_token_loglik(model, ids, vis, "yes")
      + token_by_token_loglik(model, ids, vis, "no")
    )
    / 3
  )
  np.testing.assert_allclose(out.losses, [want], rtol=1e-4)


def test_choice_is_neg_log_softmax_of_sequence_logliks(llava, llava_ref, images):
  oracle = HFOracle(llava[0], loss="choice", batch_size=5)
  queries = QUERIES[1:]
  out = oracle.query(images[1:], queries)
  np.testing.assert_array_equal(out.status, STATUS_OK)
  targets = ["wave hand", "yes", "clap"]  # sample 2: "yes" is the most common reference
  want = [expected_choice(llava_ref, i + 1, q, t) for i, (q, t) in enumerate(zip(queries, targets))]
  np.testing.assert_allclose(out.losses, want, rtol=1e-4, atol=1e-5)
  # The answer is the most likely option.
  assert out.answers == [
    max(q.choices, key=lambda c: llava_ref[i + 1, c]) for i, q in enumerate(queries)
  ]
  # Multi-token options are scored as whole sequences, not by their first token alone.
  ids, vis = image_prompt_ids(llava[0], images[1], QUERIES[1].prompt)
  first = {
    c: token_by_token_loglik(oracle.model, ids, vis, c.split()[0]) for c in QUERIES[1].choices
  }
  first_only = np.log(np.exp(list(first.values())).sum()) - first["wave hand"]
  assert abs(out.losses[0] - first_only) > 1e-3


def greedy_reference(path, image, question, n):
  model = LlavaForConditionalGeneration.from_pretrained(path).eval()
  ids, vis = image_prompt_ids(path, image, question)
  with torch.no_grad():
    out = model.generate(
      input_ids=torch.tensor([ids]),
      **vis,
      do_sample=False,
      max_new_tokens=n,
      suppress_tokens=[tiny.IMAGE_ID, tiny.VIDEO_ID],
    )
  tokenizer = AutoProcessor.from_pretrained(path).tokenizer
  return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()


def test_vqa_loss_is_one_minus_accuracy_of_greedy_answer(llava, images):
  oracle = HFOracle(llava[0], loss="vqa", max_new_tokens=4, batch_size=4)
  prompt = QUERIES[0].prompt
  probe = oracle.query(images[:2], [QUERIES[0]] * 2)
  gen = [greedy_reference(llava[0], images[i], prompt, 4) for i in range(2)]
  assert probe.answers == gen
  assert all(gen) and gen[0] != gen[1]  # two different, non-empty answers
  # Hand-computed VQA accuracies: 1 match in 10 → 0.3; 3 in 10 → 0.9; 10 of 10 → 1.
  queries = [
    Query(prompt, (gen[0],) + ("zzz",) * 9),
    Query(prompt, (gen[1],) * 3 + ("zzz",) * 7),
    Query(prompt, (gen[0],) * 10),
    Query(prompt, (gen[1],) * 10),  # the other image's answer
  ]
  out = oracle.query(images[[0, 1, 0, 0]], queries)
  np.testing.assert_array_equal(out.status, STATUS_OK)
  np.testing.assert_allclose(out.losses, [0.7, 0.1, 0.0, 1.0], atol=1e-6)
  assert oracle.stats.completion_tokens > 0


@pytest.mark.parametrize("loss", ["nll", "choice", "vqa"])
def test_batching_matches_batch_size_one(llava, images, loss):
  queries = QUERIES[1:] + QUERIES[1:2]
  one = HFOracle(llava[0], loss=loss, batch_size=1).query(images, queries)
  many = HFOracle(llava[0], loss=loss, batch_size=7).query(images, queries)
  np.testing.assert_array_equal(one.status, STATUS_OK)
  np.testing.assert_array_equal(many.status, STATUS_OK)
  np.testing.assert_allclose(many.losses, one.losses, rtol=1e-5, atol=1e-6)
  assert many.answers == one.answers


def test_video_clips_nll_and_choice(video_llava, clips):
  path, _ = video_llava
  model = VideoLlavaForConditionalGeneration.from_pretrained(path).eval()
  queries = QUERIES[1:3]
  table = {}
  for i, q in enumerate(queries):
    ids, vis = video_prompt_ids(clips[i], q.prompt)
    for text in set(q.answers) | set(q.choices):
      table[i, text] = token_by_token_loglik(model, ids, vis, text)
  nll = HFOracle(path, loss="nll", batch_size=2).query(clips, queries)
  np.testing.assert_array_equal(nll.status, STATUS_OK)
  want = [expected_nll(table, i, q) for i, q in enumerate(queries)]
  np.testing.assert_allclose(nll.losses, want, rtol=1e-4, atol=1e-5)
  choice = HFOracle(path, loss="choice", batch_size=3).query(clips, queries)
  want = [
    expected_choice(table, 0, queries[0], "wave hand"),
    expected_choice(table, 1, queries[1], "yes"),
  ]
  np.testing.assert_allclose(choice.losses, want, rtol=1e-4, atol=1e-5)
  # Every frame reaches the model: changing only the last frame changes the loss.
  edited = clips.copy()
  edited[0, -1] = 255 - edited[0, -1]
  again = HFOracle(path, loss="nll").query(edited, queries)
  assert abs(again.losses[0] - nll.losses[0]) > 1e-4
  assert again.losses[1] == pytest.approx(nll.losses[1], rel=1e-5)


def test_video_llava_processor_is_the_real_one_and_the_fallback_agrees(video_llava, clips):
  """With torchvision the saved `VideoLlavaProcessor` (and its video processor) is what loads;
  the frame-wise fallback used without torchvision gives the same losses and answers."""
  pytest.importorskip("torchvision")
  from transformers import VideoLlavaProcessor, VideoLlavaVideoProcessor

  from anonymax.oracles.hf import FramewiseProcessor

  queries = QUERIES[1:3]
  real = HFOracle(video_llava[0], loss="choice")
  assert type(real.processor) is VideoLlavaProcessor
  assert isinstance(real.processor.video_processor, VideoLlavaVideoProcessor)
  fallback = HFOracle(video_llava[0], loss="choice")
  fallback.processor = FramewiseProcessor(video_llava[0], fallback.model.config)
  a, b = real.query(clips, queries), fallback.query(clips, queries)
  np.testing.assert_array_equal(a.status, STATUS_OK)
  np.testing.assert_array_equal(b.status, STATUS_OK)
  np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5, atol=1e-6)
  assert a.answers == b.answers


def test_wrong_visual_shapes_are_invalid_not_raised(llava, video_llava, images, clips):
  video = HFOracle(video_llava[0])
  out = video.query(images[:2], QUERIES[:2])  # images to a clip oracle
  np.testing.assert_array_equal(out.status, STATUS_INVALID)
  image = HFOracle(llava[0])
  out = image.query(images[:3], QUERIES[:2])  # 3 visuals for 2 queries
  np.testing.assert_array_equal(out.status, STATUS_INVALID)
  assert image.stats.failures == 2


# --- Failures stay per sample ----------------------------------------------------------------------


def test_failing_samples_do_not_stop_the_others(llava, llava_ref, images):
  oracle = HFOracle(llava[0], loss="choice", batch_size=4)
  model = oracle.model
  dog = tiny.VOCAB["dog"]

  def raise_on_dog(module, args, kwargs):  # a model error for the one prompt that has "dog"
    if (kwargs["input_ids"] == dog).any():
      raise RuntimeError("simulated model failure")

  def nan_on_clap(module, args, kwargs, output):  # non-finite logits for the "clap" rows
    rows = (kwargs["input_ids"] == tiny.VOCAB["clap"]).any(1)
    output.logits[rows] = float("nan")

  h1 = model.register_forward_pre_hook(raise_on_dog, with_kwargs=True)
  h2 = model.register_forward_hook(nan_on_clap, with_kwargs=True)
  try:
    bad_choice = Query(
      "what is the person doing?", ("fly",), ("run", "sit")
    )  # target not an option
    queries = [QUERIES[1], QUERIES[2], bad_choice, QUERIES[3]]
    out = oracle.query(images[[1, 2, 0, 3]], queries)  # QUERIES[1] with its reference image
  finally:
    h1.remove()
    h2.remove()
  np.testing.assert_array_equal(
    out.status, [STATUS_OK, STATUS_FAILED, STATUS_INVALID, STATUS_INVALID]
  )
  assert out.losses[0] == pytest.approx(
    expected_choice(llava_ref, 1, QUERIES[1], "wave hand"), rel=1e-4
  )
  np.testing.assert_array_equal(out.losses[1:], 0.0)
  assert oracle.stats.failures == 3 and oracle.stats.calls == 4


# --- Through the JAX bridge --------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["nll", "choice", "vqa"])
def test_losses_through_bridge_inside_jit_match_direct_call(llava, images, loss):
  oracle = HFOracle(llava[0], loss=loss, batch_size=4)
  queries = QUERIES[1:]
  bridge = OracleBridge(oracle, queries)
  visuals = jnp.asarray(images[:3], jnp.float32) / 255.0
  order = jnp.array([2, 0, 1], jnp.int32)

  @jax.jit
  def step(v, idx):
    losses, status = bridge(v, idx)
    return losses, status, jnp.sum(jnp.where(status == STATUS_OK, losses, 0.0))

  losses, status, total = step(visuals, order)
  direct = oracle.query(to_uint8(np.asarray(visuals)), [queries[i] for i in order.tolist()])
  np.testing.assert_array_equal(np.asarray(status), STATUS_OK)
  np.testing.assert_allclose(np.asarray(losses), direct.losses, rtol=1e-6)
  assert math.isclose(float(total), float(direct.losses.sum()), rel_tol=1e-5)
  assert bridge.last_answers == direct.answers


def test_bf16_runs_and_stays_close_to_float32(llava, images):
  f32 = HFOracle(llava[0], loss="nll", dtype="float32").query(images, QUERIES)
  bf16 = HFOracle(llava[0], loss="nll", dtype="bfloat16")
  assert bf16.model.dtype == torch.bfloat16 and bf16.name.endswith(":bfloat16")
  out = bf16.query(images, QUERIES)
  np.testing.assert_array_equal(out.status, STATUS_OK)
  np.testing.assert_allclose(out.losses, f32.losses, rtol=0.1)
