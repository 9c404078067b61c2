"""Pieces shared by the real-data configs (okvqa.py, hmdb51_vispr.py, ucf101_vispr.py); not a config."""

from __future__ import annotations

import ml_collections

from configs import synthetic


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


def real_data_config(args: dict[str, str], *, default_oracle: str) -> ml_collections.ConfigDict:
  """The synthetic config's oracle, optimizer and evaluation sections with real-data models."""
  oracle = args.get("oracle", default_oracle)
  if oracle == "reference":
    raise ValueError("oracle=reference is the synthetic benchmark's black box: use openai or hf")
  passed = {k: args[k] for k in ("base_url", "model", "loss", "zo", "scal") if k in args}
  if "loss" not in passed:
    passed["loss"] = "vqa" if oracle == "openai" else "nll"
  c = synthetic.get_config(",".join([f"oracle={oracle}", *(f"{k}={v}" for k, v in passed.items())]))
  # The anonymizer of SPAct/VITA (64-128-256-512-512) and a ResNet-50 reviewer and judge.
  c.anonymizer.features = (64, 128, 256, 512, 512)
  c.anonymizer.groups = 8
  c.reviewer.name = "resnet50"
  c.reviewer.kwargs = {}
  c.eval.judge_model = "resnet50"
  c.eval.judge_kwargs = {}
  c.eval.judge_steps = 3000
  c.eval.judge_batch_size = 64
  # SPSA in ~10⁵ dimensions (the last decoder block here) estimates poorly; the mask head alone
  # (~500 parameters) is perturbed, and privacy moves every layer.
  c.optim.perturb = "^(mask_out|fill)"
  c.optim.privacy_grad_scale = 10.0
  c.oracle.hf.device = "cuda"
  c.batch_size = 8  # 16 black-box calls per step
  c.privacy_batch_size = 16
  c.total_steps = 500
  c.log_every = 10
  c.checkpoint_every = 25
  return c
