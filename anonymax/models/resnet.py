"""The privacy reviewer f_P (and the fresh privacy judge): ResNet v1.5 multi-label classifiers.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, with the stride of each
downsampling bottleneck on its 3x3 conv (v1.5, as torchvision). The paper follows Wu et al.
(2020) and Dave et al. (2022) in using a ResNet-50 as f_P; ResNet-18 and a one-stage
`ResNetTiny` serve smaller budgets and tests.

Convolutions carry no bias (a norm follows each), so parameter counts equal torchvision's:
ResNet-50 has 23,508,032 parameters before its head, ResNet-18 11,176,512.

Input: float images [B, H, W, 3] in [0, 1] (ImageNet mean/std normalisation happens inside), or
clips [B, T, H, W, 3], classified frame by frame with the logits averaged over T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from anonymax.models.norm import GroupNorm, num_groups

ModuleDef = Any

# ImageNet statistics: the usual input normalisation for a ResNet trained from scratch, too.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetBlock(nn.Module):
  """Basic block: y = act(proj(x) + norm(conv3x3(act(norm(conv3x3(x)))))) (ResNet-18/34)."""

  filters: int
  conv: ModuleDef
  norm: Callable[..., nn.Module]
  act: Callable[[jnp.ndarray], jnp.ndarray] = nn.relu
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = self.act(self.norm(self.filters)(y))
    y = self.conv(self.filters, (3, 3))(y)
    # Zero-initialised last scale: every block starts as the identity (Goyal et al. 2017).
    y = self.norm(self.filters, scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(self.filters, name="norm_proj")(residual)
    return self.act(residual + y)


class BottleneckBlock(nn.Module):
  """Bottleneck: 1x1 (filters) -> 3x3 (filters, strided) -> 1x1 (4 filters), plus shortcut."""

  filters: int
  conv: ModuleDef
  norm: Callable[..., nn.Module]
  act: Callable[[jnp.ndarray], jnp.ndarray] = nn.relu
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    residual = x
    y = self.conv(self.filters, (1, 1))(x)
    y = self.act(self.norm(self.filters)(y))
    y = self.conv(self.filters, (3, 3), self.strides)(y)
    y = self.act(self.norm(self.filters)(y))
    y = self.conv(self.filters * 4, (1, 1))(y)
    y = self.norm(self.filters * 4, scale_init=nn.initializers.zeros)(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(self.filters * 4, name="norm_proj")(residual)
    return self.act(residual + y)


def _norm_factory(kind: str, train: bool, groups: int, dtype: Any) -> Callable[..., nn.Module]:
  """Returns norm(channels, **kw) -> a BatchNorm or GroupNorm module for that width."""
  if kind == "batch":

    def batch_norm(channels: int, **kw) -> nn.Module:
      del channels  # BatchNorm normalises each channel on its own
      return nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, **kw
      )

    return batch_norm
  if kind == "group":

    def group_norm(channels: int, **kw) -> nn.Module:
      return GroupNorm(num_groups=num_groups(groups, channels), dtype=dtype, **kw)

    return group_norm
  raise ValueError(f"ResNet.norm must be 'batch' or 'group', got {kind!r}")


class ResNet(nn.Module):
  """ResNet multi-label classifier returning logits [B, num_classes].

  Attributes:
    stage_sizes: blocks per stage; stage i has num_filters * 2**i filters and (for i > 0)
      halves the resolution in its first block.
    block_cls: `ResNetBlock` or `BottleneckBlock`.
    num_classes: number of outputs (privacy attributes); sigmoid/BCE is the caller's.
    num_filters: width of the first stage.
    norm: "batch" (statistics in the "batch_stats" collection, mutable when training) or
      "group" (no batch statistics).
    groups: GroupNorm groups when norm="group" (clipped to a divisor of each width).
    small_input: 3x3 stem without max-pool, for 32-64 px inputs; otherwise the ImageNet
      stem (7x7 stride-2 conv, 3x3 stride-2 max-pool: the first stage sees H/4 x W/4).
    stem_strides: stride of the small-input stem's conv. 1 keeps the full resolution; 2 halves
      it (a 3x3 window at stride 2 still reads every pixel, unlike the max-pool) and costs about
      a quarter of the compute, since every later stage shrinks with it.
    dtype: computation dtype; logits are returned as float32.
  """

  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_classes: int
  num_filters: int = 64
  norm: str = "batch"
  groups: int = 32
  small_input: bool = False
  stem_strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    """Classifies images [B, H, W, 3] or clips [B, T, H, W, 3] (logits averaged over T).

    Args:
      x: float visuals in [0, 1].
      train: BatchNorm uses (and updates) batch statistics when True, running ones otherwise.

    Returns:
      float32 logits [B, num_classes].
    """
    if x.ndim not in (4, 5) or x.shape[-1] != 3:
      raise ValueError(
        f"ResNet input must be images [B, H, W, 3] or clips [B, T, H, W, 3], got {x.shape}"
      )
    if self.num_classes < 1:
      raise ValueError(f"ResNet.num_classes must be >= 1, got {self.num_classes}")
    if not self.stage_sizes:
      raise ValueError("ResNet.stage_sizes must name at least one stage")
    clip_shape = x.shape[:2] if x.ndim == 5 else None
    if clip_shape is not None:
      x = x.reshape((-1,) + x.shape[2:])

    conv = partial(nn.Conv, use_bias=False, dtype=self.dtype)
    norm = _norm_factory(self.norm, train, self.groups, self.dtype)

    mean = jnp.asarray(IMAGENET_MEAN, self.dtype)
    std = jnp.asarray(IMAGENET_STD, self.dtype)
    x = (x.astype(self.dtype) - mean) / std
    if self.small_input:
      strides = (self.stem_strides,) * 2
      x = conv(self.num_filters, (3, 3), strides, name="conv_init")(x)
      x = nn.relu(norm(self.num_filters, name="norm_init")(x))
    else:
      x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
      x = nn.relu(norm(self.num_filters, name="norm_init")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = self.block_cls(
          self.num_filters * 2**i, conv=conv, norm=norm, act=nn.relu, strides=strides
        )(x)
    x = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    logits = logits.astype(jnp.float32)
    if clip_shape is not None:
      logits = logits.reshape(clip_shape + (self.num_classes,)).mean(axis=1)
    return logits


# Stage sizes are tuples so the modules stay hashable (usable as jit static arguments).
ResNet18 = partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=ResNetBlock)
ResNet50 = partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock)
# One basic block, 8 filters, small-input stem: for tests and quick CPU checks only.
ResNetTiny = partial(
  ResNet, stage_sizes=(1,), block_cls=ResNetBlock, num_filters=8, small_input=True, groups=4
)
