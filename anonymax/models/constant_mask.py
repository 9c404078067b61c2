"""The learned constant mask: an input-independent anonymizer, the trivial solution to beat.

  f(x) = (1 − m) ⊙ x + m ⊙ c,   m = sigmoid(W) ∈ (0, 1)^{S×S},   c = sigmoid(γ) ∈ (0, 1)³,

the same paint-over form as the U-Net's "mask" head, but m is one learned image instead of a
function of x: it can only cover where private content *usually* is. Trained with the same
objective as the U-Net, it shows how much of an anonymizer's privacy a fixed layout explains. On
inputs of another size the mask is resized (bilinear); clips are masked frame by frame.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConstantMask(nn.Module):
  """f(x) = (1 − m) x + m c with a learned mask m [S, S] and colour c (see the module).

  Attributes:
    size: S, the side of the learned mask (the training image size).
    mask_init_logit: W at initialisation; −3 gives m ≈ 0.05 everywhere (near the identity).
  """

  size: int
  mask_init_logit: float = -3.0

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Masks images [B, H, W, C] or clips [B, T, H, W, C] with values in [0, 1]."""
    if x.ndim not in (4, 5):
      raise ValueError(
        f"ConstantMask input must be images [B, H, W, C] or clips [B, T, H, W, C], got {x.shape}"
      )
    if self.size < 1:
      raise ValueError(f"ConstantMask.size must be >= 1, got {self.size}")
    logits = self.param(
      "mask_logits", nn.initializers.constant(self.mask_init_logit), (self.size, self.size, 1)
    )
    fill = nn.sigmoid(self.param("fill", nn.initializers.zeros, (x.shape[-1],), jnp.float32))
    height, width = x.shape[-3], x.shape[-2]
    if (height, width) != (self.size, self.size):
      logits = jax.image.resize(logits, (height, width, 1), method="linear")
    m = nn.sigmoid(logits.astype(jnp.float32))
    y = (1.0 - m) * x.astype(jnp.float32) + m * fill
    return y.astype(x.dtype)
