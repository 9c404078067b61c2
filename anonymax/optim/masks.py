"""Parameter masks: which leaves of a parameter tree a zeroth-order estimate covers.

A zeroth-order estimator perturbs every element it covers, and its variance grows with the
number of perturbed elements, so it is common to estimate only a subset of the parameters
(e.g. the decoder of the anonymizer). A mask can be given three ways:

* a pytree of bools (or bool arrays broadcastable to the leaf) with the structure of the params;
* a callable ``(path, leaf) -> bool``, ``path`` the '/'-joined key path (``"dec/conv/kernel"``);
* a regular expression searched (``re.search``) in that path: anchor it with ``^...$`` to
  match the whole path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Mask = Any  # None | pytree of bools | Callable[[str, Any], bool] | str


def path_to_str(path) -> str:
  """Returns the '/'-joined form of a JAX key path, e.g. ``"params/dec/kernel"``."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def resolve_mask(mask: Mask, tree: Any) -> Any:
  """Turns any accepted mask form into a pytree of bools matching ``tree``.

  Args:
    mask: None (every leaf), a pytree of bools, a callable ``(path, leaf) -> bool`` or a regex.
    tree: the parameter tree.

  Returns:
    A pytree with the structure of ``tree`` whose leaves are Python bools or bool arrays.

  Raises:
    ValueError: if a pytree mask does not have the structure of ``tree`` or the regex is invalid.
  """
  if mask is None:
    return jax.tree.map(lambda _: True, tree)
  if isinstance(mask, str):
    try:
      pattern = re.compile(mask)
    except re.error as e:
      raise ValueError(f"mask: invalid regular expression {mask!r}: {e}") from e
    return jax.tree_util.tree_map_with_path(
      lambda p, _: pattern.search(path_to_str(p)) is not None, tree
    )
  if callable(mask):
    fn: Callable[[str, Any], bool] = mask
    return jax.tree_util.tree_map_with_path(lambda p, x: bool(fn(path_to_str(p), x)), tree)
  mask_struct = jax.tree.structure(mask)
  tree_struct = jax.tree.structure(tree)
  if mask_struct != tree_struct:
    raise ValueError(
      f"mask: pytree structure {mask_struct} does not match the parameters' {tree_struct}"
    )
  return mask


def apply_mask(mask: Mask, tree: Any) -> Any:
  """Zeroes the leaves (or elements) of ``tree`` where ``mask`` is False; dtypes are kept.

  Args:
    mask: any form accepted by :func:`resolve_mask`.
    tree: a pytree of arrays.

  Returns:
    ``tree`` with masked-out entries replaced by zeros of the same dtype.
  """
  if mask is None:
    return tree
  resolved = resolve_mask(mask, tree)

  def _one(m, x):
    if isinstance(m, (bool, np.bool_)):
      # Static decision: no select op is emitted for fully kept or fully dropped leaves.
      return x if m else jnp.zeros_like(x)
    return jnp.where(m, x, jnp.zeros_like(x))

  return jax.tree.map(_one, resolved, tree)
