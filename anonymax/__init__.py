"""anonymax: train a visual anonymizer against a black-box multimodal LLM (JAX/Flax).

>>> import anonymax
>>> anonymize = anonymax.load_anonymizer("workdirs/synthetic")   # uint8 images → uint8 images
"""

__version__ = "0.1.0"


def load_anonymizer(workdir: str, step: int | None = None):
  """The trained anonymizer of `workdir` as a function uint8 [N, H, W, 3] → uint8 [N, H, W, 3].

  Needs no dataset, reviewer or optimizer: see `anonymax.anonymizer.load_anonymizer`.
  """
  # Imported here so that `import anonymax.optim` (for other JAX projects) stays light.
  from anonymax.anonymizer import load_anonymizer as load  # noqa: PLC0415

  return load(workdir, step)
