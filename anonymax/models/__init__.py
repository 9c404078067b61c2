"""Models by name: the anonymizer, the reviewer/judge ResNets and the comparison anonymizers.

>>> model = get_model("unet", features=(8, 16, 32), groups=4)
>>> reviewer = get_model("resnet50", num_classes=7)
>>> baseline = get_model("blur", sigma=2.0)
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn

from anonymax.models.baselines import BDQ, Blacken, Downsample, GaussianBlur, Identity
from anonymax.models.constant_mask import ConstantMask
from anonymax.models.resnet import (
  BottleneckBlock,
  ResNet,
  ResNet18,
  ResNet50,
  ResNetBlock,
  ResNetTiny,
)
from anonymax.models.unet import UNet

_MODELS: dict[str, Callable[..., nn.Module]] = {
  "unet": UNet,
  # The learned constant mask: input-independent, the trivial solution to beat.
  "constant_mask": ConstantMask,
  "resnet50": ResNet50,
  "resnet18": ResNet18,
  "resnet_tiny": ResNetTiny,
  # Comparison anonymizers (x -> x'); all but bdq have no parameters.
  "identity": Identity,
  "downsample": Downsample,
  "blur": GaussianBlur,
  "blacken": Blacken,
  "bdq": BDQ,
}
MODEL_NAMES = tuple(_MODELS)
ANONYMIZER_NAMES = ("unet", "constant_mask", "identity", "downsample", "blur", "blacken", "bdq")
CLASSIFIER_NAMES = ("resnet50", "resnet18", "resnet_tiny")


def get_model(name: str, **kwargs) -> nn.Module:
  """Builds the model called `name` with the given fields.

  Args:
    name: one of MODEL_NAMES.
    **kwargs: the module's fields (e.g. `features` for "unet", `num_classes` for a ResNet).

  Returns:
    An unbound `flax.linen` module.
  """
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
  if name in CLASSIFIER_NAMES and "num_classes" not in kwargs:
    raise ValueError(f"model {name!r} needs num_classes (the number of privacy attributes)")
  try:
    return _MODELS[name](**kwargs)
  except TypeError as e:  # an unknown field: name the model, not the dataclass machinery
    raise ValueError(f"bad arguments for model {name!r}: {e}") from e


__all__ = [
  "ANONYMIZER_NAMES",
  "BDQ",
  "Blacken",
  "BottleneckBlock",
  "CLASSIFIER_NAMES",
  "ConstantMask",
  "Downsample",
  "GaussianBlur",
  "Identity",
  "MODEL_NAMES",
  "ResNet",
  "ResNet18",
  "ResNet50",
  "ResNetBlock",
  "ResNetTiny",
  "UNet",
  "get_model",
]
