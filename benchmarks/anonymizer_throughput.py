r"""Anonymizer throughput: the Flax U-Net f_A against a PyTorch replica with the same weights.

f_A runs on every image the black box sees and the privacy gradient is backpropagated through it,
so both passes are timed, on the same device kind (JAX's default backend; torch on CUDA when JAX
runs on a GPU and torch sees one, else on the CPU):

  fwd      x -> f_A(x)                                  (jax.jit | torch.inference_mode, eager)
  fwd+bwd  θ -> ∇_θ mean(f_A(x))                        (jax.jit(jax.grad) | torch.autograd)

  images/s = batch / median seconds per batch     (warm-up iterations excluded)
  speedup  = JAX images/s / torch images/s        (forward; > 1: JAX is faster)

  python benchmarks/anonymizer_throughput.py                       # synthetic-scale U-Net, 64x64
  python benchmarks/anonymizer_throughput.py --features 64,128,256,512,512 --groups 8 \
      --image-size 224 --batch 16 --iters 10                       # the real-data default
  python benchmarks/anonymizer_throughput.py --torch-compile       # torch.compile instead of eager

The replica (`TorchUNet`, built by `torch_unet_from_flax`) takes the same NHWC input in [0, 1]
and runs NCHW inside. Before timing, the two outputs and the two gradients are compared on
weights far from the identity; a mismatch exits non-zero. Tolerances: max |Δ output| ≤ 1e-4 on
the CPU and 1e-2 on a GPU, where both frameworks run float32 convolutions in TF32 by default;
max |Δ grad| ≤ 1e-2 · max |grad| on both, as each gradient entry is a float32 sum over all
B·H·W positions (on the residual head torch's CPU conv_out bias gradient is off by ~3e-4 relative
to a float64 sum at batch 32 and 64x64, JAX's by ~1e-7).

Threads on the CPU: XLA spreads each op over all cores by default, torch uses
torch.get_num_threads() (its default is the number of physical cores; `--threads` sets it). For
a single-core comparison pin the process instead, e.g. `taskset -c 0 python ...`.

Last lines: `train_speedup=<x>` (fwd+bwd), then `speedup=<x>` (fwd).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

# On a GPU JAX would otherwise take 75% of the memory up front and leave torch the rest.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import jax.numpy as jnp
import numpy as np

try:
  import torch
  from torch import nn
  from torch.nn import functional as F
except ImportError as e:  # pragma: no cover - depends on the environment
  _MSG = "anonymizer_throughput needs PyTorch: pip install torch (the [hf] extra)"
  if __name__ == "__main__":
    raise SystemExit(_MSG) from None
  raise ImportError(_MSG) from e

from anonymax.models.norm import num_groups
from anonymax.models.unet import UNet

HEADS = ("residual", "masked_fill", "mask")
# flax.linen.GroupNorm's default; torch's is 1e-5.
GROUP_NORM_EPS = 1e-6


class TorchConvBlock(nn.Module):
  """Two (3x3 conv -> GroupNorm -> swish) layers, as anonymax.models.unet.ConvBlock."""

  def __init__(self, in_channels: int, features: int, groups: int):
    super().__init__()
    g = num_groups(groups, features)
    for i, c_in in enumerate((in_channels, features)):
      # padding=1 is flax's "SAME" for an odd 3x3 kernel at stride 1.
      self.add_module(f"conv_{i}", nn.Conv2d(c_in, features, 3, padding=1, bias=False))
      self.add_module(f"norm_{i}", nn.GroupNorm(g, features, eps=GROUP_NORM_EPS))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for i in range(2):
      x = getattr(self, f"conv_{i}")(x)
      x = F.silu(getattr(self, f"norm_{i}")(x))
    return x


class TorchUNet(nn.Module):
  """PyTorch replica of anonymax.models.unet.UNet (float32), parameter for parameter.

  Submodules carry the Flax names (down_0.conv_0.weight ~ params["down_0"]["conv_0"]["kernel"]),
  so `torch_unet_from_flax` can load a Flax tree with a strict state dict. With h the decoder's
  last features, m = sigmoid(mask_out(h)) and c = sigmoid(fill):

    residual:     f_A(x) = clip(x + conv_out(h), 0, 1)
    masked_fill:  f_A(x) = (1 − m) · clip(x + conv_out(h), 0, 1) + m · c
    mask:         f_A(x) = (1 − m) · x + m · c
  """

  def __init__(
    self,
    in_channels: int,
    features: Sequence[int] = (64, 128, 256, 512, 512),
    groups: int = 8,
    head: str = "residual",
  ):
    super().__init__()
    if not features:
      raise ValueError("TorchUNet.features must name at least one level")
    if head not in HEADS:
      raise ValueError(f"TorchUNet.head must be one of {HEADS}, got {head!r}")
    self.features = tuple(features)
    self.head = head
    c_in = in_channels
    for level, feat in enumerate(self.features):
      self.add_module(f"down_{level}", TorchConvBlock(c_in, feat, groups))
      c_in = feat
    for level in reversed(range(len(self.features) - 1)):
      feat = self.features[level]
      self.add_module(f"upsample_{level}", nn.ConvTranspose2d(c_in, feat, 2, stride=2, bias=False))
      # The skip (feat channels) is concatenated in front of the upsampled features.
      self.add_module(f"up_{level}", TorchConvBlock(2 * feat, feat, groups))
      c_in = feat
    if head != "mask":
      self.conv_out = nn.Conv2d(c_in, in_channels, 1)
    if head != "residual":
      self.mask_out = nn.Conv2d(c_in, 1, 1)
      self.fill = nn.Parameter(torch.zeros(in_channels))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """Anonymizes images [B, H, W, C] or clips [B, T, H, W, C] in [0, 1], like UNet.__call__."""
    if x.ndim not in (4, 5):
      raise ValueError(f"TorchUNet input must be [B, H, W, C] or [B, T, H, W, C], got {x.shape}")
    shape = x.shape
    x = x.reshape((-1,) + tuple(shape[-3:]))
    depth = len(self.features)
    factor = 2 ** (depth - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f"image size {tuple(x.shape[1:3])} is not divisible by {factor}")
    # A plain NCHW copy: the permuted view alone would be channels-last in memory.
    x = x.permute(0, 3, 1, 2).contiguous()
    h = x
    skips = []
    for level in range(depth):
      h = getattr(self, f"down_{level}")(h)
      if level < depth - 1:
        skips.append(h)
        h = F.max_pool2d(h, 2, 2)
    for level in reversed(range(depth - 1)):
      h = getattr(self, f"upsample_{level}")(h)
      h = getattr(self, f"up_{level}")(torch.cat([skips[level], h], dim=1))
    y = x
    if self.head != "mask":
      y = torch.clamp(y + self.conv_out(h), 0.0, 1.0)
    if self.head != "residual":
      m = torch.sigmoid(self.mask_out(h))
      fill = torch.sigmoid(self.fill).view(1, -1, 1, 1)
      y = (1.0 - m) * y + m * fill
    return y.permute(0, 2, 3, 1).reshape(shape)


def flax_to_torch_state(params) -> dict[str, np.ndarray]:
  """Maps a Flax UNet parameter tree (or a gradient of one) to TorchUNet state-dict arrays.

  conv kernel [kh, kw, in, out] -> weight [out, in, kh, kw]; transposed-conv kernel
  [kh, kw, in, out] -> weight [in, out, kh, kw] flipped in space: flax's ConvTranspose
  (transpose_kernel=False) correlates the stride-dilated input with the kernel, so for a 2x2
  kernel at stride 2 output pixel (2i + a, 2j + b) takes kernel tap (1 − a, 1 − b), where
  torch's ConvTranspose2d takes tap (a, b). GroupNorm scale -> weight; bias and fill as they are.
  The map only permutes entries, so it serves gradients as well as parameters.
  """
  if "params" in params:
    params = params["params"]
  state = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [p.key for p in path]
    a = np.asarray(leaf, np.float32)
    name = keys[-1]
    if name == "kernel" and keys[0].startswith("upsample_"):
      a, name = a[::-1, ::-1].transpose(2, 3, 0, 1), "weight"
    elif name == "kernel":
      a, name = a.transpose(3, 2, 0, 1), "weight"
    elif name == "scale":
      name = "weight"
    # A writable copy: torch.from_numpy warns on (read-only) views of JAX buffers.
    state[".".join(keys[:-1] + [name])] = np.array(a, order="C")
  return state


def torch_unet_from_flax(module: UNet, params, device: str | torch.device = "cpu") -> TorchUNet:
  """Builds the TorchUNet of a Flax `UNet` and loads its parameters (a strict, shape-checked load).

  Args:
    module: the Flax UNet (its features, groups and head are copied; dtype must be float32).
    params: its parameters, `variables["params"]` or the whole `variables`.
    device: where the torch module lives.

  Returns:
    The TorchUNet in eval mode (it has no train-time behaviour; eval only for form).
  """
  if jnp.dtype(module.dtype) != jnp.float32:
    raise ValueError(f"the torch replica is float32 only, got UNet.dtype={module.dtype}")
  state = flax_to_torch_state(params)
  in_channels = state["down_0.conv_0.weight"].shape[1]
  model = TorchUNet(in_channels, module.features, module.groups, module.head)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
  return model.to(device).eval()


def benchmark_weights(features, groups: int, head: str, image_size: int, seed: int = 0):
  """A UNet and weights far from the identity, so the agreement check sees every layer.

  At initialisation W_out is small and m ≈ 0.0025, so f_A ≈ x whatever the rest computes; a
  larger output init, a zero mask logit and noise on every parameter (GroupNorm scales, biases
  and the fill colour included) make every layer move the output. Timings do not depend on it.
  """
  model = UNet(
    features=tuple(features), groups=groups, head=head, out_init_scale=0.5, mask_init_logit=0.0
  )
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  params = jax.jit(model.init)(jax.random.key(seed), x)["params"]
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda p: p + 0.2 * rng.standard_normal(p.shape, np.float32), params)
  return model, params


def median_seconds(
  fn: Callable[[], object], sync: Callable[[object], None], warmup: int, iters: int
):
  """Median wall time of fn() over `iters` calls after `warmup` calls, synchronised each time."""
  for _ in range(warmup):
    sync(fn())
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    sync(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--features",
    default="8,16,32",
    help="U-Net widths, finest first (real data: 64,128,256,512,512)",
  )
  parser.add_argument("--groups", type=int, default=4, help="GroupNorm groups (clipped per layer)")
  parser.add_argument("--head", default="mask", choices=HEADS, help="UNet output head")
  parser.add_argument("--image-size", type=int, default=64, help="square image side in pixels")
  parser.add_argument("--batch", type=int, default=32, help="images per batch")
  parser.add_argument("--iters", type=int, default=20, help="timed iterations per measurement")
  parser.add_argument("--warmup", type=int, default=3, help="untimed iterations (after compiling)")
  parser.add_argument("--torch-compile", action="store_true", help="torch.compile the replica")
  parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
  args = parser.parse_args(argv)
  features = tuple(int(f) for f in args.features.split(",") if f.strip())

  if args.threads is not None:
    torch.set_num_threads(args.threads)
  backend = jax.default_backend()
  device = "cuda" if backend == "gpu" and torch.cuda.is_available() else "cpu"
  if device == "cuda":
    # Let cuDNN pick the fastest algorithm per shape; the timed shapes never change.
    torch.backends.cudnn.benchmark = True
  tol = 1e-2 if device == "cuda" else 1e-4
  grad_tol = 1e-2  # relative to max |grad|; float32 sums over B·H·W positions (see above)

  model, params = benchmark_weights(features, args.groups, args.head, args.image_size)
  shape = (args.batch, args.image_size, args.image_size, 3)
  x_np = np.random.default_rng(1).uniform(size=shape).astype(np.float32)
  x_jax = jax.device_put(x_np)
  params = jax.device_put(params)
  t_model = torch_unet_from_flax(model, params, device)
  x_torch = torch.from_numpy(x_np).to(device)
  t_params = [p for _, p in t_model.named_parameters()]

  apply = jax.jit(lambda p, v: model.apply({"params": p}, v))
  grad = jax.jit(jax.grad(lambda p, v: jnp.mean(model.apply({"params": p}, v))))

  def torch_fwd(m):
    with torch.inference_mode():
      return m(x_torch)

  def torch_grad(m):
    return torch.autograd.grad(m(x_torch).mean(), t_params)

  # Agreement, on the eager module (torch.compile renames parameters and may reorder float ops).
  y_diff = float(
    np.max(np.abs(np.asarray(apply(params, x_jax)) - torch_fwd(t_model).cpu().numpy()))
  )
  g_jax = flax_to_torch_state(grad(params, x_jax))
  g_torch = dict(zip([n for n, _ in t_model.named_parameters()], torch_grad(t_model), strict=True))
  g_scale = max(float(np.max(np.abs(g))) for g in g_jax.values())
  g_diff = max(float(np.max(np.abs(g_jax[n] - g.cpu().numpy()))) for n, g in g_torch.items())
  g_rel = g_diff / g_scale
  print(
    f"# jax={backend} torch={device} (threads {torch.get_num_threads()}) features={features} "
    f"groups={args.groups} head={args.head} batch={args.batch} image={args.image_size}"
  )
  print(
    f"# max |Δ output| = {y_diff:.2e} (tol {tol:g}), "
    f"max |Δ grad| / max |grad| = {g_rel:.2e} (tol {grad_tol:g})"
  )
  if not (y_diff <= tol and g_rel <= grad_tol):
    sys.exit(
      f"anonymizer_throughput: the torch replica disagrees with the Flax UNet: max |Δ output| "
      f"{y_diff:.2e} (tolerance {tol:g}), max |Δ grad| / max |grad| {g_rel:.2e} "
      f"(tolerance {grad_tol:g})"
    )

  t_run = torch.compile(t_model) if args.torch_compile else t_model
  t_name = "torch.compile" if args.torch_compile else "torch"

  def jax_sync(out):
    jax.block_until_ready(out)

  def torch_sync(_):
    if device == "cuda":
      torch.cuda.synchronize()

  # One extra warm-up call each covers compilation (jit, torch.compile) beyond --warmup.
  warm, n = args.warmup + 1, args.iters
  seconds = {
    ("jax", "fwd"): median_seconds(lambda: apply(params, x_jax), jax_sync, warm, n),
    (t_name, "fwd"): median_seconds(lambda: torch_fwd(t_run), torch_sync, warm, n),
    ("jax", "fwd+bwd"): median_seconds(lambda: grad(params, x_jax), jax_sync, warm, n),
    (t_name, "fwd+bwd"): median_seconds(lambda: torch_grad(t_run), torch_sync, warm, n),
  }
  print(f"{'framework':>14} {'pass':>8} {'ms/batch':>9} {'images/s':>10}")
  for (framework, kind), s in seconds.items():
    print(f"{framework:>14} {kind:>8} {1000 * s:>9.2f} {args.batch / s:>10.1f}")
  # images/s ratio = inverse ratio of seconds per batch (same batch).
  print(f"train_speedup={seconds[(t_name, 'fwd+bwd')] / seconds[('jax', 'fwd+bwd')]:.3f}")
  print(f"speedup={seconds[(t_name, 'fwd')] / seconds[('jax', 'fwd')]:.3f}")


if __name__ == "__main__":
  main()
