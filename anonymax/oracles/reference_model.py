"""The network behind the reference black box: a small question-conditioned CNN and its training.

`ReferenceNet` maps a visual (image, or clip of T frames) and a question id to logits over a fixed
answer vocabulary. Frames go through one shared conv stack (no normalisation, so a sample's answer
never depends on the rest of its batch) whose last feature map is modulated by the question (FiLM,
Perez et al., AAAI 2018); a clip's per-frame embeddings are mixed by a temporal convolution and
pooled over T (mean and max), so actions defined by motion are recognised. `fit` trains it on the raw
examples of an `ExampleSource` (handed over by whoever builds the oracle, e.g. the synthetic
benchmark's generator) and measures its raw held-out accuracy.

`train` fits it with the soft cross-entropy of the answer distribution,

  L(θ) = −E_(x,q) Σ_a w_a(x, q) log softmax(f_θ(x, q))_a ,

where w_a is the fraction of the annotator answers equal to a (`utility_losses.answer_weights`, the
weights of the oracle's ``"nll"`` loss) with AdamW, a deterministic batch order and a fixed initialisation key, so
two trainings with the same arguments give bit-identical parameters on CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from anonymax import metrics, utility_losses

# Bump when the architecture or the training recipe changes: it is part of the cache key.
MODEL_VERSION = 1


def normalize_text(text: str) -> str:
  """Lower case, punctuation to spaces, whitespace collapsed: "What's  up?" → "what s up"."""
  return " ".join(re.sub(r"[^0-9a-z]+", " ", str(text).lower()).split())


def answer_weights(answers: Sequence[str], vocab_index: dict[str, int]) -> dict[int, float]:
  """`utility_losses.answer_weights` keyed by vocabulary id: w_i = count(a : id(a) = i) / #answers.

  `vocab_index` maps `normalize_text(answer)` to its id; answers outside the vocabulary are keyed
  by -1 (they still count in #answers, so the weights sum to 1).
  """
  return utility_losses.answer_weights(
    answers, key=lambda a: vocab_index.get(normalize_text(a), -1)
  )


class ReferenceNet(nn.Module):
  """Question-conditioned answer classifier over images [N,H,W,3] or clips [N,T,H,W,3].

  Attributes:
    num_answers: size of the answer vocabulary (number of logits).
    num_questions: number of known question prompts (the embedding table size).
    features: channels of the stride-2 conv stages.
    hidden: width of the frame embedding and of the answer head.
    grid: the final feature map is average-pooled to grid×grid before flattening, which keeps where
      things are (poses, objects) at a small parameter cost.
  """

  num_answers: int
  num_questions: int
  features: Sequence[int] = (16, 32, 64)
  hidden: int = 128
  grid: int = 8

  @nn.compact
  def __call__(self, visuals: jnp.ndarray, question_ids: jnp.ndarray) -> jnp.ndarray:
    """Logits over the answer vocabulary.

    Args:
      visuals: uint8 or float in [0, 1]; [N, H, W, 3] or [N, T, H, W, 3].
      question_ids: int [N], indices into the known prompts.

    Returns:
      float32 logits [N, num_answers].
    """
    if visuals.dtype == jnp.uint8:
      visuals = visuals.astype(jnp.float32) / 255.0
    x = visuals.astype(jnp.float32) * 2.0 - 1.0
    is_clip = x.ndim == 5
    if is_clip:
      n, t = x.shape[:2]
      x = x.reshape((n * t,) + x.shape[2:])
    for i, f in enumerate(self.features):
      x = nn.relu(nn.Conv(f, (3, 3), strides=2, name=f"conv{i}")(x))
    q = nn.Embed(self.num_questions, self.hidden, name="question")(question_ids)
    # FiLM (Perez et al., 2018): the question scales and shifts every channel of the feature map,
    # so "what colour is the ball" can keep only ball-like locations before the map is pooled.
    film = nn.Dense(2 * x.shape[-1], name="film")(jnp.repeat(q, t, axis=0) if is_clip else q)
    gamma, beta = jnp.split(film[:, None, None, :], 2, axis=-1)
    x = nn.relu(x * (1.0 + gamma) + beta)
    x = nn.relu(nn.Conv(x.shape[-1], (1, 1), name="fused")(x))
    window = max(x.shape[1] // self.grid, 1)
    where = nn.avg_pool(x, (window, window), (window, window)).reshape((x.shape[0], -1))
    anywhere = x.max(axis=(1, 2))  # "is there ...": present at any location
    x = nn.relu(nn.Dense(self.hidden, name="frame")(jnp.concatenate([where, anywhere], -1)))
    if is_clip:
      # A temporal conv over frame embeddings sees change between neighbouring frames (motion);
      # mean and max over T keep both how long and how strongly a pattern occurs.
      x = x.reshape((n, t, self.hidden))
      x = nn.relu(nn.Conv(self.hidden, (3,), name="temporal")(x))
      x = jnp.concatenate([x.mean(axis=1), x.max(axis=1)], axis=-1)
    h = nn.relu(nn.Dense(self.hidden, name="head")(jnp.concatenate([x, q], -1)))
    return nn.Dense(self.num_answers, name="logits")(h)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hyperparameters of one training run (all of them enter the cache key)."""

  steps: int = 1500
  batch_size: int = 64
  learning_rate: float = 3e-3
  weight_decay: float = 1e-4
  seed: int = 0
  features: tuple[int, ...] = (16, 32, 64)
  hidden: int = 128
  grid: int = 8

  def __post_init__(self):
    for field in ("steps", "batch_size", "hidden", "grid"):
      if getattr(self, field) <= 0:
        raise ValueError(f"TrainConfig.{field}={getattr(self, field)!r}: must be positive")
    if self.learning_rate <= 0:
      raise ValueError(f"TrainConfig.learning_rate={self.learning_rate!r}: must be positive")


def make_model(config: TrainConfig, *, num_answers: int, num_questions: int) -> ReferenceNet:
  return ReferenceNet(
    num_answers=num_answers,
    num_questions=num_questions,
    features=tuple(config.features),
    hidden=config.hidden,
    grid=config.grid,
  )


def init_params(model: ReferenceNet, visual_shape: Sequence[int], seed: int) -> dict:
  """Initial parameters for visuals of shape [N, ...] = `visual_shape` (N is irrelevant)."""
  dummy = jnp.zeros((1,) + tuple(visual_shape[1:]), jnp.uint8)
  return model.init(jax.random.key(seed), dummy, jnp.zeros((1,), jnp.int32))["params"]


def batch_order(step: int, *, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """Indices of training batch `step`: epoch-wise permutations, a pure function of (seed, step)."""
  per_epoch = max(num_examples // batch_size, 1)
  epoch, within = divmod(step, per_epoch)
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
  idx = perm[within * batch_size : (within + 1) * batch_size]
  if len(idx) < batch_size:  # fewer examples than one batch: repeat the permutation
    idx = np.resize(perm, batch_size)
  return idx


def train(
  visuals: np.ndarray,
  visual_ids: np.ndarray,
  question_ids: np.ndarray,
  targets: np.ndarray,
  *,
  num_questions: int,
  config: TrainConfig,
  progress: Callable[[int, float], None] | None = None,
) -> tuple[dict, dict[str, float]]:
  """Fits a `ReferenceNet` by soft cross-entropy, −Σ_a w_a log softmax(logits)_a, averaged.

  Args:
    visuals: uint8 [N, H, W, 3] or [N, T, H, W, 3] raw training visuals.
    visual_ids: int [M] the visual of each example (one visual may carry several questions).
    question_ids: int [M] question index of each example.
    targets: float32 [M, V] answer distribution of each example (rows sum to 1).
    num_questions: size of the question embedding table.
    config: the hyperparameters.
    progress: optional `progress(step, loss)` called every few steps (for a progress bar).

  Returns:
    (params, info) with info = {"final_loss", "seconds"}.
  """
  if visuals.dtype != np.uint8:
    raise ValueError(f"visuals: dtype {visuals.dtype}, expected uint8")
  n = len(visual_ids)
  if len(question_ids) != n or len(targets) != n:
    raise ValueError(
      f"visual_ids/question_ids/targets: lengths {n}/{len(question_ids)}/{len(targets)} differ"
    )
  visual_ids = np.asarray(visual_ids, np.int64)
  if n == 0 or visual_ids.min() < 0 or visual_ids.max() >= len(visuals):
    raise ValueError(f"visual_ids: must be a non-empty index into {len(visuals)} visuals")
  question_ids = np.asarray(question_ids, np.int32)
  targets = np.asarray(targets, np.float32)
  model = make_model(config, num_answers=targets.shape[1], num_questions=num_questions)
  params = init_params(model, visuals.shape, config.seed)
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, config.learning_rate, min(100, config.steps // 10 + 1), config.steps
  )
  tx = optax.adamw(schedule, weight_decay=config.weight_decay)
  opt_state = tx.init(params)

  @jax.jit
  def step_fn(params, opt_state, x, q, w):
    def loss_fn(p):
      logp = jax.nn.log_softmax(model.apply({"params": p}, x, q))
      return -jnp.mean(jnp.sum(w * logp, axis=-1))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  start = time.perf_counter()
  loss = jnp.zeros(())
  for step in range(config.steps):
    idx = batch_order(step, num_examples=n, batch_size=config.batch_size, seed=config.seed)
    params, opt_state, loss = step_fn(
      params, opt_state, visuals[visual_ids[idx]], question_ids[idx], targets[idx]
    )
    if progress is not None and (step % 25 == 0 or step == config.steps - 1):
      progress(step, float(loss))
  params = jax.device_get(params)
  return params, {"final_loss": float(loss), "seconds": time.perf_counter() - start}


def make_predict_fn(model: ReferenceNet) -> Callable[[dict, np.ndarray, np.ndarray], jax.Array]:
  """`predict(params, visuals, question_ids) -> log-probabilities [N, V]`, jitted once per shape."""

  @jax.jit
  def predict(params, visuals, question_ids):
    return jax.nn.log_softmax(model.apply({"params": params}, visuals, question_ids))

  return predict


def flatten_params(params: dict) -> dict[str, np.ndarray]:
  """{"conv0/kernel": array, ...}: the parameter tree as flat named arrays (for an .npz file)."""
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}


def unflatten_params(flat: dict[str, np.ndarray]) -> dict:
  """Inverse of `flatten_params`."""
  return traverse_util.unflatten_dict({k: np.asarray(v) for k, v in flat.items()}, sep="/")


# --- Training on the examples of a builder -----------------------------------------------------

# The oracle's own examples come from seeds far from those a benchmark's splits use (s and
# s + a test offset of a few thousand at most).
TRAIN_SEED_OFFSET = 10_000
TEST_SEED_OFFSET = 20_000
# How many examples (of seed 0) the data fingerprint hashes: enough to see a changed generator.
FINGERPRINT_EXAMPLES = 4


@dataclasses.dataclass
class Examples:
  """(visual, prompt, answers) triples; one visual may carry several questions."""

  visuals: np.ndarray  # uint8 [N, S, S, 3] or [N, T, S, S, 3]
  visual_ids: np.ndarray  # int32 [M], index into visuals
  prompts: list[str]  # [M]
  answers: list[tuple[str, ...]]  # [M]
  question_types: list[str]  # [M]

  def select(self, keep: np.ndarray) -> Examples:
    """The examples where `keep` (bool [M]) is true."""
    idx = np.flatnonzero(keep)
    return Examples(
      self.visuals,
      self.visual_ids[idx],
      [self.prompts[i] for i in idx],
      [self.answers[i] for i in idx],
      [self.question_types[i] for i in idx],
    )


@dataclasses.dataclass(frozen=True)
class ExampleSource:
  """Raw labelled examples the reference network learns from, handed over by its builder.

  Attributes:
    generate: ``generate(num, seed) -> Examples``, deterministic in (num, seed); the visuals
      have the size (and clip length) the oracle is built for.
    vocabulary: the base answer vocabulary; its order gives the answer ids (answers the examples
      use beyond it follow, sorted).
    labels: further label sets the generator is defined by (e.g. the action classes in the order
      of their ids); they enter the data fingerprint with the vocabulary and a few examples.
  """

  generate: Callable[[int, int], Examples]
  vocabulary: tuple[str, ...]
  labels: tuple[tuple[str, ...], ...] = ()


def check_examples(examples: Examples, *, image_size: int, clip_length: int) -> None:
  """Raises ValueError unless the visuals are uint8 [N, (T,) S, S, 3] for these sizes."""
  frame = (image_size, image_size, 3)
  want = ((clip_length,) if clip_length else ()) + frame
  got = tuple(np.shape(examples.visuals))[1:]
  if got != want or np.asarray(examples.visuals).dtype != np.uint8:
    raise ValueError(
      f"examples: visuals {np.asarray(examples.visuals).dtype} [N, {', '.join(map(str, got))}] "
      f"do not fit image_size={image_size}, clip_length={clip_length} (want uint8 "
      f"[N, {', '.join(map(str, want))}])"
    )


def data_fingerprint(source: ExampleSource, *, image_size: int, clip_length: int) -> str:
  """A hash of what the source produces now (a changed generator invalidates the cache).

  sha256 of repr((vocabulary, *labels)), then the visuals' bytes and repr((prompts, answers)) of
  `FINGERPRINT_EXAMPLES` examples of seed 0.

  Raises:
    ValueError: if the source's visuals do not have these sizes (see `check_examples`).
  """
  h = hashlib.sha256()
  h.update(repr((tuple(source.vocabulary), *source.labels)).encode())
  ex = source.generate(FINGERPRINT_EXAMPLES, 0)
  check_examples(ex, image_size=image_size, clip_length=clip_length)
  h.update(np.ascontiguousarray(ex.visuals).tobytes())
  h.update(repr((ex.prompts, ex.answers)).encode())
  return h.hexdigest()


def vocabulary(examples: Examples, base: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(answer vocabulary, known prompts): the `base` vocabulary plus any other answer the examples
  use (sorted), in a deterministic order. Answers keep their spelling (the VQA scorer compares raw
  strings when all ten references agree); entries equal under `normalize_text` are merged."""
  by_key: dict[str, str] = {}
  for a in base:
    by_key.setdefault(normalize_text(a), str(a))
  extra = {}
  for row in examples.answers:
    for a in row:
      if normalize_text(a) and normalize_text(a) not in by_key:
        extra.setdefault(normalize_text(a), a)
  vocab = list(by_key.values()) + [extra[k] for k in sorted(extra)]
  prompts = sorted({normalize_text(p) for p in examples.prompts})
  return tuple(vocab), tuple(prompts)


def encode(
  examples: Examples, vocab: Sequence[str], prompts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
  """(question ids int32 [M], answer distributions float32 [M, V]) of the examples."""
  vocab_index = {normalize_text(a): i for i, a in enumerate(vocab)}
  prompt_index = {p: i for i, p in enumerate(prompts)}
  qids = np.array([prompt_index[normalize_text(p)] for p in examples.prompts], np.int32)
  targets = np.zeros((len(qids), len(vocab)), np.float32)
  for row, answers in enumerate(examples.answers):
    for i, w in answer_weights(answers, vocab_index).items():
      if i >= 0:
        targets[row, i] += w
  targets /= np.maximum(targets.sum(axis=1, keepdims=True), 1e-12)
  return qids, targets


def accuracy(log_probs: np.ndarray, examples: Examples, vocab: Sequence[str]) -> dict[str, float]:
  """Raw-data accuracy: top-1 against the most frequent reference answer (overall and per
  question type, "top1_<type>") and VQA accuracy."""
  pred = [vocab[i] for i in np.argmax(log_probs, axis=1)]
  pairs = list(zip(pred, examples.answers, strict=True))
  majority = [Counter(a).most_common(1)[0][0] for a in examples.answers]
  top1 = np.array(
    [normalize_text(p) == normalize_text(m) for p, m in zip(pred, majority, strict=True)]
  )
  vqa = np.array([metrics.vqa_accuracy(p, list(a)) for p, a in pairs])
  out = {"top1": float(top1.mean()), "vqa_accuracy": float(vqa.mean())}
  types = np.array(examples.question_types)
  for t in sorted(set(examples.question_types)):
    out[f"top1_{t}"] = float(top1[types == t].mean())
  return out


def fit(
  config: TrainConfig,
  examples: ExampleSource,
  *,
  image_size: int,
  clip_length: int,
  num_train: int,
  num_test: int,
  progress: bool = True,
) -> tuple[dict, tuple[str, ...], tuple[str, ...], dict]:
  """Trains on `num_train` raw examples of seed TRAIN_SEED_OFFSET + config.seed and measures the
  accuracy on `num_test` raw examples of seed TEST_SEED_OFFSET + config.seed.

  Returns:
    (params, vocab, prompts, metadata), metadata holding the hyperparameters, training seconds and
    the raw-test accuracies (keys prefixed "test_").

  Raises:
    ValueError: if the examples' visuals do not have these sizes.
  """
  train_ex = examples.generate(num_train, TRAIN_SEED_OFFSET + config.seed)
  check_examples(train_ex, image_size=image_size, clip_length=clip_length)
  vocab, prompts = vocabulary(train_ex, examples.vocabulary)
  qids, targets = encode(train_ex, vocab, prompts)
  bar = None
  if progress:
    from tqdm.auto import tqdm  # noqa: PLC0415

    bar = tqdm(total=config.steps, desc="reference oracle", unit="step")

  def report(step, loss):
    bar.n = step + 1
    bar.set_postfix(loss=f"{loss:.3f}")

  params, info = train(
    train_ex.visuals,
    train_ex.visual_ids,
    qids,
    targets,
    num_questions=len(prompts),
    config=config,
    progress=report if bar is not None else None,
  )
  if bar is not None:
    bar.close()
  metadata = {
    "num_train": num_train,
    "image_size": image_size,
    "clip_length": clip_length,
    "train_seconds": info["seconds"],
    "final_loss": info["final_loss"],
  }
  if num_test:
    test_ex = examples.generate(num_test, TEST_SEED_OFFSET + config.seed)
    # Only known questions can be asked (the oracle answers others with STATUS_INVALID).
    known = set(prompts)
    test_ex = test_ex.select(np.array([normalize_text(p) in known for p in test_ex.prompts]))
    test_qids, _ = encode(test_ex, vocab, prompts)
    predict = make_predict_fn(
      make_model(config, num_answers=len(vocab), num_questions=len(prompts))
    )
    lp = np.concatenate(
      [
        np.asarray(
          predict(
            params, test_ex.visuals[test_ex.visual_ids[lo : lo + 256]], test_qids[lo : lo + 256]
          )
        )
        for lo in range(0, len(test_qids), 256)
      ]
    )
    metadata.update({f"test_{k}": v for k, v in accuracy(lp, test_ex, vocab).items()})
  return params, vocab, prompts, metadata
