r"""The embedded default: the synthetic benchmark against the reference black box (no download).

Train, then evaluate (writes eval.json, eval.md, samples.png in the workdir; evaluation and
anonymization read the run's config back from W/config.json):

  python launch/train.py --config=configs/synthetic.py --workdir=workdirs/synthetic
  python launch/eval.py  --workdir=workdirs/synthetic

Variants (comma-separated after a colon; combinable):
  smoke                 tiny sizes and few steps: a few minutes on a laptop, used by the tests.
  clips                 short clips (T frames) with action recognition instead of image VQA.
  scenes=v1|v2          v1 (the default): the scenes of the published figures; v2: one to three
                        people anywhere, questions about them, a validation split, ground-truth
                        boxes, so the evaluation adds the region-obfuscation rows, and the two
                        reference anonymizers (constant mask, privacy only) trained beside ours.
  oracle=openai         the black box behind any OpenAI-compatible server (key from $OPENAI_API_KEY);
  base_url=URL          ... at this address, e.g. the reference served by
                        `python launch/reference_server.py --port 8000` → base_url=http://127.0.0.1:8000/v1
  model=NAME            the served model's name (oracle=openai) or a local path (oracle=hf).
  oracle=hf             a local transformers model (LLaVA / Video-LLaVA) from model=PATH.
  loss=nll|choice|vqa   the utility loss the black box returns.
  zo=ours|spsa|spsa_gc|es|cma_es|reinforce|guided|guided_surrogate   the zeroth-order method
                        for the utility gradient (paper Table 6; cma_es is evosax's CMA-ES,
                        reinforce is REINFORCE, guided is Guided ES over the subspace of past
                        estimates, guided_surrogate over the gradients of an online surrogate
                        of the black box learned from the answers already paid for).
  scal=augmented_tchebycheff|tchebycheff|weighted_sum|smooth_tchebycheff   (paper Table 5).

Example:
  python launch/train.py --config=configs/synthetic.py:smoke,zo=spsa --workdir=/tmp/w
Any field is overridable too, e.g. --config.total_steps=100. Fields left None
(reviewer.num_classes, the privacy entry of optim.scalarization.ideal) are derived from the data
when a run starts and written to W/config.json.
"""

from __future__ import annotations

import ml_collections

from anonymax.variants import Variant, parse_variants

VARIANTS = (
  Variant("smoke", "tiny sizes and few steps: minutes on a laptop, used by the tests", type=bool),
  Variant("clips", "short clips (T frames) with action recognition instead of image VQA", type=bool),
  Variant("scenes", "the synthetic scenes", default="v1", choices=("v1", "v2")),
  Variant("oracle", "the black box", default="reference", choices=("reference", "openai", "hf")),
  Variant("base_url", "the OpenAI-compatible server's address (oracle=openai)"),
  Variant("model", "the served model's name (oracle=openai) or a local path (oracle=hf)"),
  Variant("loss", "the utility loss the black box returns", choices=("nll", "choice", "vqa")),
  Variant(
    "zo", "the zeroth-order method (paper Table 6)", default="ours",
    choices=("ours", "spsa", "spsa_gc", "es", "cma_es", "reinforce", "guided", "guided_surrogate"),
  ),
  Variant(
    "scal", "the scalarization (paper Table 5)", default="augmented_tchebycheff",
    choices=("augmented_tchebycheff", "tchebycheff", "weighted_sum", "smooth_tchebycheff"),
  ),
)  # fmt: skip


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the synthetic-benchmark config; `arg` selects variants (see the module docstring)."""
  return build(parse_variants(arg, VARIANTS, config_name="configs/synthetic.py"))


def _judge(model: str, kwargs: dict, *, steps: int, batch_size: int = 64, **fields) -> dict:
  """One privacy judge's fields (anonymax.privacy_judge.JudgeSpec, less its name)."""
  spec = dict(model=model, model_kwargs=kwargs, seed=0, steps=steps, learning_rate=1e-3)
  return spec | dict(batch_size=batch_size, weight_decay=0.0, warmup_fraction=0.0) | fields


def build(variants: dict) -> ml_collections.ConfigDict:
  """The config for parsed `variants` (a dict as `parse_variants` returns for `VARIANTS`)."""
  args = {v.name: (False if v.type is bool else v.default) for v in VARIANTS} | dict(variants)
  smoke, clips = bool(args["smoke"]), bool(args["clips"])
  scenes = args["scenes"]

  c = ml_collections.ConfigDict()
  c.seed = 0

  # --- Data: utility and privacy examples both come from the synthetic benchmark here. ---
  c.data = ml_collections.ConfigDict()
  c.data.dataset = "synthetic"
  c.data.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.data.image_size = 32 if smoke else 64
  c.data.clip_length = (4 if smoke else 8) if clips else 0
  # "v1": the scenes the published figures come from (train and test splits); "v2": people at
  # random places, scales and counts, questions about them, train/validation/test splits and
  # ground-truth boxes (anonymax.data.synthetic).
  c.data.scenes = scenes
  c.data.num_train = 256 if smoke else 4000
  if scenes == "v2":
    c.data.num_validation = 64 if smoke else 500
  c.data.num_test = 128 if smoke else 1000
  c.data.seed = 0

  # --- Models. ---
  c.anonymizer = ml_collections.ConfigDict()
  c.anonymizer.name = "unet"
  c.anonymizer.features = (8, 16) if smoke else (8, 16, 32)
  c.anonymizer.groups = 4
  # "mask": f_A(x) = (1 − m(x)) x + m(x) c, a predicted soft mask painted with a learned colour,
  # so every change removes information (a fresh judge cannot read it back); "residual":
  # clip(x + r(x)); "masked_fill": both (see anonymax/models/unet.py and the README's results).
  c.anonymizer.head = "mask"
  c.anonymizer.mask_init_logit = -3.0  # m ≈ 0.05 at initialisation: near the identity, not stuck

  c.reviewer = ml_collections.ConfigDict()
  c.reviewer.name = "resnet_tiny" if smoke else "resnet18"
  # Derived from the privacy data (its number of attributes) unless set here.
  c.reviewer.num_classes = ml_collections.FieldReference(None, field_type=int)
  # A narrow ResNet-18 with the ImageNet stem keeps a CPU step cheap; real data uses resnet50.
  c.reviewer.kwargs = {} if smoke else dict(num_filters=16, small_input=False)
  c.reviewer.learning_rate = 1e-3
  c.reviewer.restart_every = (
    0  # re-initialise the reviewer every N steps (0: never), Wu et al. 2020
  )

  # --- The black box. ---
  c.oracle = ml_collections.ConfigDict()
  c.oracle.kind = args["oracle"]
  # Chat servers give no teacher-forced likelihood: the openai oracle scores choices by default.
  c.oracle.loss = args["loss"] or ("nll" if c.oracle.kind != "openai" else "choice")
  # The VQA accuracy of generated answers (the "vqa" loss and evaluation): "official" (the reply
  # as given) or "free_form" (normalised, lemmatised, containment; anonymax/answer_scoring.py).
  c.oracle.answer_scoring = "official"
  c.oracle.cache = c.oracle.kind != "reference"  # persistent cache in the workdir for paid oracles
  c.oracle.reference = ml_collections.ConfigDict()
  c.oracle.reference.cache_dir = ml_collections.FieldReference(None, field_type=str)
  # None: the reference's own defaults (images 8192 examples / 1500 steps; clips 1024 / 300).
  c.oracle.reference.num_train = (
    1024 if smoke else ml_collections.FieldReference(None, field_type=int)
  )
  c.oracle.reference.steps = 300 if smoke else ml_collections.FieldReference(None, field_type=int)
  c.oracle.openai = ml_collections.ConfigDict()
  # The served model's name; a local `python launch/reference_server.py` answers to any name.
  c.oracle.openai.model = (args["model"] if c.oracle.kind == "openai" else None) or "gpt-4o"
  c.oracle.openai.base_url = args["base_url"] or ml_collections.FieldReference(None, field_type=str)
  c.oracle.openai.api_key_env = "OPENAI_API_KEY"
  c.oracle.openai.concurrency = 16
  c.oracle.openai.max_retries = 3
  c.oracle.openai.timeout = 30.0
  c.oracle.openai.image_format = "png"
  c.oracle.openai.budget_calls = ml_collections.FieldReference(None, field_type=int)
  c.oracle.openai.budget_cost = ml_collections.FieldReference(None, field_type=float)
  c.oracle.openai.budget_tokens = ml_collections.FieldReference(None, field_type=int)
  c.oracle.openai.prices = ml_collections.FieldReference(
    None, field_type=dict
  )  # {input, output} per 1M tokens
  c.oracle.openai.detail = "auto"
  c.oracle.openai.jpeg_quality = 90
  c.oracle.openai.max_tokens = 16
  c.oracle.openai.top_logprobs = 10
  # How questions are worded for the black box ({question}, {choices}; anonymax/prompts.py);
  # None sends them as they are (the reference black box knows them so).
  c.oracle.openai.prompt_template = ml_collections.FieldReference(None, field_type=str)
  c.oracle.hf = ml_collections.ConfigDict()
  c.oracle.hf.model_path = (args["model"] if c.oracle.kind == "hf" else None) or ""
  c.oracle.hf.device = "cpu"
  c.oracle.hf.batch_size = 8
  c.oracle.hf.dtype = "auto"
  c.oracle.hf.max_new_tokens = 10
  c.oracle.hf.answer_weighting = "frequency"
  c.oracle.hf.system_prompt = ml_collections.FieldReference(None, field_type=str)
  c.oracle.hf.prompt_template = ml_collections.FieldReference(None, field_type=str)

  # --- Objective and optimizer (anonymax.optim.make_optimizer). ---
  # "utility_and_privacy" (the paper) or "privacy_only" (utility weight 0, no black box).
  c.objective = "utility_and_privacy"
  # Reference anonymizers trained beside this one by launch/train.py, each in
  # <workdir>/references/<name> (anonymax.reference_anonymizers): "constant_mask", "privacy_only",
  # "surrogate_model" (the U-Net trained through a white-box utility model) and "bdq".
  c.references = (
    () if smoke or scenes == "v1" else ("constant_mask", "privacy_only", "surrogate_model", "bdq")
  )
  # The white-box utility model of the surrogate rows (anonymax.surrogate_utility): a ReferenceNet
  # fitted to the raw training split (reference_model.TrainConfig's fields; the run's seed).
  c.surrogate = ml_collections.ConfigDict(dict(steps=40 if smoke else 1500, batch_size=64))
  c.surrogate.cache_dir = ml_collections.FieldReference(None, field_type=str)
  c.privacy_loss = "neg_entropy"
  c.optim = ml_collections.ConfigDict()
  c.optim.zo_method = args["zo"]
  c.optim.num_samples = 1  # q: SPSA perturbations per step (2q oracle calls per sample)
  # h_k's multiplier before it meets ĝ_k in Eq. 11 (1.0: the paper): an SPSA estimate's norm is
  # about √D times that of the gradient it estimates, so the exact privacy gradient is scaled up.
  c.optim.privacy_grad_scale = 1.0 if smoke else 300.0
  # Regex on parameter paths to perturb ("" = all). SPSA's estimate degrades with the number of
  # perturbed parameters (cosine with the gradient ~ 1/sqrt(D)), so the default perturbs only the
  # last decoder block and the mask head (~2k of ~30k parameters); privacy moves them all.
  c.optim.perturb = "^(up_0|mask_out|fill)"
  # The critical history (Eqs. 8-10): selection "critical" | "latest" | "none"; the direction
  # (Eq. 9) and step-size (Eq. 10) adjustments can be switched off one by one (paper Table 7).
  c.optim.history = dict(
    memory_size=5,
    decay=0.9,
    gamma=0.5,
    b=1.0,
    selection="critical",
    adjust_direction=True,
    adjust_step=True,
  )
  c.optim.spsa_gc = dict(beta=0.9)
  # zo=cma_es: "diagonal" (Sep-CMA-ES, O(D)) or "full" (a D×D covariance, D ≈ 2k here).
  c.optim.cma_es = dict(covariance="diagonal")
  # zo=reinforce: the running-mean baseline's decay β (b ← β b + (1 − β) mean loss).
  c.optim.reinforce = dict(baseline_decay=0.9)
  # zo=guided (anonymax/optim/guided.py): its subspace of the running mean and latest estimates
  # (source "history"), or of the gradients of an online surrogate of the black box (source
  # "guide", zo=guided_surrogate; anonymax/online_surrogate.py); alpha None adapts the share of
  # full-space pairs to the measured agreement.
  guide = args["zo"] == "guided_surrogate"
  if guide:
    c.optim.zo_method = "guided"
  c.optim.guided = ml_collections.ConfigDict(
    dict(source="guide" if guide else "history", subspace_dim=4, alpha_min=0.02,
         agreement_decay=0.9, history_decay=0.9, switch_at=3.0)
  )  # fmt: skip
  c.optim.guided.alpha = ml_collections.FieldReference(None, field_type=float)
  # The online surrogate s_φ (used with source "guide"): its width, Adam's rate, the weights of
  # its fit's pair-difference and loss-level terms, the past steps its fit replays (0: this
  # step's pairs only) and its Adam steps per training step.
  c.online_surrogate = dict(
    width=16, learning_rate=1e-3, diff_weight=1.0, level_weight=1.0, replay=0, fit_steps=1
  )
  c.optim.scalarization = dict(
    kind=args["scal"],
    # λ: utility first. Tchebycheff equalises λ_i (L_i − z*_i), so with equal weights the
    # anonymizer would give up as much utility loss as privacy loss is left to gain; with the
    # current step (0.97, 0.03) met the target in three seeds of three, (0.95, 0.05) and
    # (0.9, 0.1) in two and one (README, Results).
    weights=(0.5, 0.5) if smoke else (0.97, 0.03),
    # z*: the utility loss the black box reaches on clean inputs (the reference's NLL on raw
    # synthetic images is about 0.55) and the privacy ideal; None is derived from the privacy
    # loss (losses.privacy_ideal(privacy_loss)). With z*_utility = 0 the utility objective would
    # always be selected, since no anonymizer can beat raw inputs.
    ideal=(0.5, None),
    eps=1e-3,
    sigma=0.1,
    mu=0.1,
  )
  c.optim.gains = dict(a=0.02, A=10.0, alpha=0.602, c=1e-2, gamma=0.101)
  # "adam" rescales d_k per parameter before −a_k (ZO-AdaMM; not in the paper; "none" is Eq. 12
  # as written): the mask head's gradients are orders of magnitude smaller than the layers
  # below it, and with one plain step size the mask never moves (see optim/factory.py).
  c.optim.precondition = dict(kind="adam", b1=0.9, b2=0.999, eps=1e-8)

  # --- Loop. ---
  # Data parallel over this many devices (0: all of them; batches must split evenly over them).
  c.num_devices = 0
  c.batch_size = 8 if smoke else 16  # utility samples per step (2x that many oracle calls)
  c.privacy_batch_size = 8 if smoke else 16
  c.total_steps = 6 if smoke else 1200
  c.log_every = 2 if smoke else 25
  c.checkpoint_every = 3 if smoke else 100
  # TensorBoard event files in workdir/tensorboard: "auto" (iff tensorboardX is installed), true, false.
  c.tensorboard = "auto"

  # --- Evaluation (launch/eval.py). ---
  c.eval = ml_collections.ConfigDict()
  # "test" for reported figures; "validation" (scenes v2) when choosing settings.
  c.eval.split = "test"
  # The privacy judges: {name: JudgeSpec fields} (anonymax.privacy_judge.JudgeSpec), each trained
  # from scratch on every row's anonymized training images; empty: the default suite
  # (privacy_judge.default_judges: two ResNet-18 seeds and a ResNet-50). Every judge's steps are
  # multiplied by judge_steps_scale (e.g. --config.eval.judge_steps_scale=0.1 for a quick look).
  if smoke:
    c.eval.judges = {"resnet_tiny": _judge("resnet_tiny", {}, steps=30, batch_size=32)}
  elif scenes == "v1":
    # Scenes v1 keep the judge their published figures were measured with.
    c.eval.judges = {
      "resnet18": _judge(
        "resnet18", dict(num_filters=16, small_input=False), steps=600, augment=False
      )
    }
  else:
    c.eval.judges = {}
  # With judges empty: "default" (the suite above) or "quick" (its first ResNet-18 at 600 steps,
  # for a first look: weaker, about a twelfth of the cost).
  c.eval.judge_suite = "default"
  c.eval.judge_steps_scale = 1.0
  # On real data (no ground-truth boxes): the rows of a face detector's blur and blackening
  # (needs the [faces] extra; left out with a warning without it).
  c.eval.detected_face_rows = True
  # The rows beside "raw" and "ours" drawn in samples.png (when the evaluation has them).
  c.eval.sample_baselines = ("obf_face_blur_strong", "downsample_x4")
  c.eval.num_samples_png = 8
  # The raw-data row's utility needs raw test images at the black box: allowed for local oracles,
  # opt-in for remote ones.
  c.eval.send_raw_to_oracle = c.oracle.kind != "openai"
  return c
