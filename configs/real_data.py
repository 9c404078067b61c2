"""Pieces shared by the real-data configs (okvqa.py, hmdb51_vispr.py, ucf101_vispr.py); not a config."""

from __future__ import annotations

import ml_collections

from anonymax.configs import synthetic
from anonymax.variants import Variant

# The variants every real-data config accepts (each adds its own).
VARIANTS = (
  Variant("oracle", "the black box", choices=("openai", "hf")),
  Variant("model", "the served model's name (openai) or a local model directory (hf)"),
  Variant("base_url", "an OpenAI-compatible server other than OpenAI's (e.g. vLLM)"),
  Variant("loss", "the utility loss (default: vqa for openai, nll for hf)", choices=("nll", "choice", "vqa")),
  Variant("zo", "as in configs/synthetic.py", default="ours", choices=("ours", "spsa", "spsa_gc", "es", "cma_es", "reinforce", "guided")),
  Variant(
    "scal", "as in configs/synthetic.py", default="augmented_tchebycheff",
    choices=("augmented_tchebycheff", "tchebycheff", "weighted_sum", "smooth_tchebycheff"),
  ),
)  # fmt: skip


def real_data(dataset: str, *, image_size: int, clip_length: int = 0, **options):
  """A data config for a real dataset read from a manual directory."""
  d = ml_collections.ConfigDict()
  d.dataset = dataset
  d.data_dir = ml_collections.FieldReference(None, field_type=str)
  # None: TFDS's <data_dir>/downloads/manual.
  d.manual_dir = ml_collections.FieldReference(None, field_type=str)
  d.image_size = image_size
  d.clip_length = clip_length
  d.num_train = ml_collections.FieldReference(None, field_type=int)  # None: the whole split
  d.num_test = ml_collections.FieldReference(None, field_type=int)
  d.seed = 0
  d.options = options
  return d


def real_data_config(args: dict, *, default_oracle: str) -> ml_collections.ConfigDict:
  """The synthetic config's oracle, optimizer and evaluation sections with real-data models.

  Args:
    args: the parsed variants (`VARIANTS` and the config's own).
    default_oracle: the black box when no oracle= variant is given.
  """
  oracle = args.get("oracle") or default_oracle
  loss = args.get("loss") or ("vqa" if oracle == "openai" else "nll")
  shared = {k: args.get(k) for k in ("base_url", "model", "zo", "scal")}
  c = synthetic.build({**shared, "oracle": oracle, "loss": loss})
  # The anonymizer of SPAct/VITA (64-128-256-512-512) and a ResNet-50 reviewer and judge.
  c.anonymizer.features = (64, 128, 256, 512, 512)
  c.anonymizer.groups = 8
  c.reviewer.name = "resnet50"
  c.reviewer.kwargs = {}
  c.eval.judges = {
    "resnet50": dict(
      model="resnet50", model_kwargs={}, seed=0, steps=3000, learning_rate=1e-3, batch_size=64
    )
  }
  # SPSA perturbs the mask head alone (68 of ~20.5M parameters: a 1×1 conv over 64 channels, its
  # bias, the 3 fill colours); privacy moves every layer. Chosen by benchmarks/perturb_subset.py:
  # the utility gradient's mean square per perturbed parameter is highest there, at initialisation
  # and after training: 2-3 times that of head + last GroupNorm, over 100 times that of head +
  # a whole block. Provisional: at the synthetic widths training with the last block perturbed
  # too did slightly better (docs/performance.md, "The perturbed subset at the real-data widths").
  c.optim.perturb = "^(mask_out|fill)"
  c.optim.privacy_grad_scale = 10.0
  c.oracle.hf.device = "cuda"
  # Real MLLMs reply in sentences and OK-VQA's answers are stemmed: a reply is credited with the
  # reference answer it states, after normalisation and lemmatisation (anonymax/answer_scoring.py).
  # Each dataset's config sets the prompt templates (anonymax/prompts.py).
  c.oracle.answer_scoring = "free_form"
  c.batch_size = 8  # 16 black-box calls per step
  c.privacy_batch_size = 16
  c.total_steps = 500
  c.log_every = 10
  c.checkpoint_every = 25
  return c
