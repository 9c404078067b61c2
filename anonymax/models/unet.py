"""The anonymizer f_A: a U-Net (Ronneberger et al., MICCAI 2015) that starts as the identity.

The paper builds f_A on the U-Net, as the adversarial anonymization line of work does (Wu et al.
2020, SPAct by Dave et al. 2022, Peng et al. 2023); the default widths (64, 128, 256, 512, 512)
are theirs. Two changes make it fit a black-box training loop:

* GroupNorm only, and no conv biases in front of it: one image's output never depends on the
  rest of its batch, so oracle caching and evaluation are exact.
* A residual output that starts near the identity,

      f_A(x) = clip(x + W_out * h(x) + b_out, 0, 1),

  with W_out initialised small (not zero): at initialisation f_A(x) ~ x (PSNR well above 30 dB),
  so the black-box MLLM first sees clean images, while every layer still receives a non-zero
  gradient through W_out (the privacy loss is backpropagated through f_A, and SPSA perturbs
  every parameter).

Images are [B, H, W, C] in [0, 1]; clips [B, T, H, W, C] are anonymized frame by frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from anonymax.models.norm import GroupNorm, num_groups


class ConvBlock(nn.Module):
  """Two (3x3 conv -> GroupNorm -> swish) layers, the U-Net's unit at every level.

  Attributes:
    features: output channels of both convolutions.
    groups: requested GroupNorm groups (clipped to a divisor of `features`).
    dtype: computation dtype.
  """

  features: int
  groups: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    g = num_groups(self.groups, self.features)
    for i in range(2):
      # No bias: the following GroupNorm's own bias makes it redundant, and a redundant bias
      # would get a (numerically) zero gradient.
      x = nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype, name=f"conv_{i}")(x)
      x = GroupNorm(num_groups=g, dtype=self.dtype, name=f"norm_{i}")(x)
      x = nn.swish(x)
    return x


class UNet(nn.Module):
  """U-Net anonymizer, near the identity at initialisation.

  f_A(x) = clip(x + conv_out(decoder(encoder(x))), 0, 1): the encoder halves the resolution
  len(features) - 1 times (2x2 max-pool), the decoder doubles it back (2x2 transposed conv) and
  concatenates the encoder's features of the same level (the skip connections).

  Attributes:
    features: channel width per level, finest first; the depth is len(features) (the paper's
      line of work uses (64, 128, 256, 512, 512); the synthetic default (8, 16, 32)).
    groups: GroupNorm groups, clipped per layer to a divisor of its channel count.
    dtype: computation dtype (parameters stay float32; the output has the input's dtype).
    out_init_scale: standard deviation of the output conv's kernel relative to LeCun-normal.
      Small keeps f_A ~ identity at init; zero would cut every other layer's gradient.
    head: "residual" (f_A above) or "masked_fill", which also predicts a soft mask m ∈ (0, 1)
      and paints a learned constant colour c over it:

          f_A(x) = (1 − m(x)) · clip(x + W_out * h(x) + b_out, 0, 1) + m(x) · c,
          m(x) = sigmoid(W_m * h(x) + b_m),   c = sigmoid(γ).

      Where m → 1 the output no longer depends on x at all, so an attribute painted over is
      removed for any later observer, not just made hard to read for the reviewer trained beside
      it; a residual change can only compress differences, which a fresh model reads again.
      "mask" is the same without the residual, f_A(x) = (1 − m(x)) · x + m(x) · c: the only
      change it can make is painting over, so every change removes information.
    mask_init_logit: b_m at initialisation; −3 gives m ≈ 0.05 (near the identity, not stuck).

  The defaults are the default config's (configs/synthetic.py); the widths have none.
  """

  features: Sequence[int]
  groups: int
  dtype: Any = jnp.float32
  out_init_scale: float = 1e-2
  head: str = "mask"
  mask_init_logit: float = -3.0

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Anonymizes images [B, H, W, C] or clips [B, T, H, W, C] with values in [0, 1].

    Args:
      x: float images or clips in [0, 1].

    Returns:
      The anonymized visuals, same shape and dtype as `x`, in [0, 1].
    """
    if x.ndim not in (4, 5):
      raise ValueError(
        f"UNet input must be images [B, H, W, C] or clips [B, T, H, W, C], got shape {x.shape}"
      )
    if not self.features:
      raise ValueError("UNet.features must name at least one level")
    if self.groups < 1:
      raise ValueError(f"UNet.groups must be >= 1, got {self.groups}")
    shape = x.shape
    if x.ndim == 5:  # frame-wise: fold T into the batch
      x = x.reshape((-1,) + shape[2:])
    height, width = x.shape[1], x.shape[2]
    depth = len(self.features)
    factor = 2 ** (depth - 1)
    if height % factor or width % factor:
      raise ValueError(
        f"UNet image size {height}x{width} is not divisible by 2**(depth-1) = {factor} "
        f"for depth {depth} (features={tuple(self.features)})"
      )

    h = x.astype(self.dtype)
    skips = []
    for level, feat in enumerate(self.features):
      h = ConvBlock(feat, self.groups, self.dtype, name=f"down_{level}")(h)
      if level < depth - 1:
        skips.append(h)
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
    for level in reversed(range(depth - 1)):
      feat = self.features[level]
      h = nn.ConvTranspose(
        feat, (2, 2), strides=(2, 2), use_bias=False, dtype=self.dtype, name=f"upsample_{level}"
      )(h)
      h = jnp.concatenate([skips[level], h], axis=-1)
      h = ConvBlock(feat, self.groups, self.dtype, name=f"up_{level}")(h)

    kernel_init = nn.initializers.variance_scaling(
      self.out_init_scale**2, "fan_in", "truncated_normal"
    )
    if self.head not in ("residual", "masked_fill", "mask"):
      raise ValueError(f"UNet.head must be 'residual', 'masked_fill' or 'mask', got {self.head!r}")
    y = x.astype(jnp.float32)
    if self.head != "mask":
      residual = nn.Conv(
        x.shape[-1], (1, 1), kernel_init=kernel_init, dtype=self.dtype, name="conv_out"
      )(h)
      # Residual in float32 so a low-precision dtype does not quantise the identity path.
      y = jnp.clip(y + residual.astype(jnp.float32), 0.0, 1.0)
    if self.head != "residual":
      logit = nn.Conv(
        1,
        (1, 1),
        kernel_init=kernel_init,
        bias_init=nn.initializers.constant(self.mask_init_logit),
        dtype=self.dtype,
        name="mask_out",
      )(h)
      m = nn.sigmoid(logit.astype(jnp.float32))
      fill = nn.sigmoid(self.param("fill", nn.initializers.zeros, (x.shape[-1],), jnp.float32))
      y = (1.0 - m) * y + m * fill
    return y.astype(x.dtype).reshape(shape)
