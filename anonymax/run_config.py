"""A run's config: its derived fields, `W/config.json`, and whether another config is the same run.

A config file leaves some fields None because they follow from the data (`derive` fills them):
  * ``reviewer.num_classes``: the number of privacy attributes of the privacy training split;
  * ``optim.scalarization.ideal[1]``: the privacy ideal z*_privacy = min L_Privacy of the
    configured ``privacy_loss`` (`losses.privacy_ideal`).
A value the user set explicitly is kept; one that contradicts the data is an error naming it.

The trainer writes the derived config, secrets removed, to ``W/config.json``; evaluation and
anonymization read it back (`load`), so they need no ``--config``. A config given to them anyway
must describe the same run (`resolve`): it may differ only in `RUNTIME_FIELDS`, which say where
files are and how a process runs, not what was trained.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from typing import Any

import ml_collections

from anonymax import losses

CONFIG_FILE = "config.json"

# Config fields that may hold secrets; they are never written to disk.
_SECRET_KEYS = ("api_key", "apikey", "token", "secret", "password", "authorization")

# Fields (glob patterns on dotted names) that a config given to eval, anonymize or a resumed
# training may set differently from W/config.json: locations, evaluation settings, the oracle's
# transport and budgets, logging and the loop's length.
RUNTIME_FIELDS = (
  "eval.*",
  "tensorboard",
  "num_devices",
  "log_every",
  "checkpoint_every",
  "total_steps",
  "*.data_dir",
  "*.manual_dir",
  "oracle.cache",
  "oracle.cache_path",
  "oracle.reference.cache_dir",
  "surrogate.cache_dir",
  "oracle.openai.base_url",
  "oracle.openai.api_key_env",
  "oracle.openai.concurrency",
  "oracle.openai.max_retries",
  "oracle.openai.timeout",
  "oracle.openai.budget_*",
  "oracle.openai.prices*",
  "oracle.hf.device",
  "oracle.hf.batch_size",
)


def scrub_secrets(tree: Any) -> Any:
  """Returns a JSON-able copy of a config dict with every secret-looking value replaced.

  A field is secret when its name contains one of `_SECRET_KEYS` — except names ending in `_env`,
  which hold the *name* of an environment variable (e.g. ``api_key_env="OPENAI_API_KEY"``), and
  `*_tokens` budget counts.
  """
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      name = str(k).lower()
      secret = any(s in name for s in _SECRET_KEYS) and not name.endswith(("_env", "_tokens"))
      out[k] = "<redacted>" if secret and v not in (None, "") else scrub_secrets(v)
    return out
  if isinstance(tree, (list, tuple)):
    return [scrub_secrets(v) for v in tree]
  if isinstance(tree, (str, int, float, bool)) or tree is None:
    return tree
  return str(tree)


def derive(config: ml_collections.ConfigDict, *, num_attributes: int) -> ml_collections.ConfigDict:
  """A copy of `config` with its derived fields filled in (see the module docstring).

  Args:
    config: a run's config as a config file builds it (fields to derive left None).
    num_attributes: P, the number of privacy attributes of the privacy training split.

  Returns:
    A new config; `config` is not changed. Deriving a derived config returns an equal one.

  Raises:
    ValueError: the privacy data has no attributes, or an explicit value contradicts the data.
  """
  config = config.copy_and_resolve_references()
  if num_attributes == 0:
    dataset = (config.get("privacy_data") or config.data).get("dataset")
    raise ValueError(
      f"the privacy data ({dataset!r}) has no privacy attributes: set config.privacy_data to a "
      "dataset that has them (e.g. config.privacy_data.dataset='vispr')"
    )
  given = config.reviewer.get("num_classes")
  if given is not None and int(given) != num_attributes:
    raise ValueError(
      f"config.reviewer.num_classes={given} but the privacy data has {num_attributes} "
      "attributes: leave it unset (it is derived from the data)"
    )
  ideal = list(config.optim.scalarization.get("ideal") or (0.0, None))
  if len(ideal) != 2:
    raise ValueError(
      f"config.optim.scalarization.ideal={tuple(ideal)!r}: must be (utility, privacy); None "
      "entries are derived"
    )
  if ideal[0] is None:
    ideal[0] = losses.UTILITY_IDEAL
  if ideal[1] is None:
    ideal[1] = losses.privacy_ideal(config.privacy_loss)
  for i, value in enumerate(ideal):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"config.optim.scalarization.ideal[{i}]={value!r}: must be a number")
  with config.unlocked():
    config.reviewer.num_classes = num_attributes
    config.optim.scalarization.ideal = tuple(float(v) for v in ideal)
  return config


def save(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes `config` (secrets removed) to ``workdir/config.json`` atomically; returns the path."""
  path = os.path.join(workdir, CONFIG_FILE)
  text = json.dumps(scrub_secrets(config.to_dict()), indent=2, default=str)
  fd, tmp = tempfile.mkstemp(dir=workdir, prefix=".config.", suffix=".json")
  with os.fdopen(fd, "w") as f:
    f.write(text + "\n")
  os.replace(tmp, path)
  return path


def _tuples(tree: Any) -> Any:
  """JSON lists back to the tuples configs use (model widths, weights, the ideal point)."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def load(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run wrote to ``workdir/config.json``.

  Raises:
    FileNotFoundError: naming the file when the workdir has none (no run was started there).
    ValueError: naming the file when it is not a config.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} not found: train first (python launch/train.py --workdir={workdir})"
    )
  try:
    with open(path) as f:
      tree = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: not a readable config ({e})") from e
  if not isinstance(tree, dict):
    raise ValueError(f"{path}: not a config (a JSON object is expected)")
  return ml_collections.ConfigDict(_tuples(tree))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  """{dotted name: leaf}; an empty dict (e.g. no model kwargs) is a leaf of its own."""
  if isinstance(tree, dict) and tree:
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def _comparable(value: Any) -> Any:
  """The value as config.json stores it (tuples as lists, others as str)."""
  return json.loads(json.dumps(value, default=str))


def is_runtime_field(name: str) -> bool:
  """Whether the dotted field `name` is one of `RUNTIME_FIELDS`."""
  return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUNTIME_FIELDS)


def differences(given: ml_collections.ConfigDict, saved: ml_collections.ConfigDict):
  """The fields, outside `RUNTIME_FIELDS`, where `given` sets a value other than `saved`'s.

  A field `given` leaves None (to be derived) or that `saved` lacks is no difference.

  Returns:
    [(dotted name, given value, saved value)], sorted by name.
  """
  # Compared as config.json stores them: a secret is "<redacted>" on both sides.
  flat_given = _flat(scrub_secrets(given.to_dict()))
  flat_saved = _flat(scrub_secrets(saved.to_dict()))
  out = []
  for name in sorted(flat_given):
    if is_runtime_field(name):
      continue
    if name not in flat_saved:
      # A field the saved run lacks is new (no difference) unless the run has a value above it,
      # e.g. model kwargs {} there and {num_filters: 16} here.
      parents = [name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)]
      above = next((p for p in parents if p in flat_saved), None)
      if above is not None:
        out.append((above, _nested(flat_given, above), flat_saved[above]))
      continue
    value = _comparable(flat_given[name])
    derived_entry = isinstance(value, list) and None in value
    if value is None or derived_entry and _partial_match(value, flat_saved[name]):
      continue
    if value != _comparable(flat_saved[name]):
      out.append((name, flat_given[name], flat_saved[name]))
  return out


def _nested(flat: dict[str, Any], name: str) -> dict[str, Any]:
  """The sub-dict under dotted `name` of a flat dict."""
  return {k[len(name) + 1 :]: v for k, v in flat.items() if k.startswith(name + ".")}


def _partial_match(given: list, saved: Any) -> bool:
  saved = _comparable(saved)
  if not isinstance(saved, list) or len(saved) != len(given):
    return False
  return all(g is None or g == s for g, s in zip(given, saved))


def check_same_run(given, saved, *, source: str) -> None:
  """Raises a one-line ValueError naming the first field where `given` is not `saved`'s run.

  Args:
    given: a config from --config.
    saved: the run's config (from `load`).
    source: where `saved` came from, for the message (e.g. "W/config.json").
  """
  diffs = differences(given, saved)
  if diffs:
    name, value, theirs = diffs[0]
    more = f" (and {len(diffs) - 1} more field(s))" if len(diffs) > 1 else ""
    raise ValueError(
      f"config.{name}={value!r} but {source} has {theirs!r}{more}: the given --config describes "
      "another run; leave --config out to use the run's own config"
    )


def resolve(workdir: str, given: ml_collections.ConfigDict | None = None):
  """The config of the run in `workdir`, for evaluating it or anonymizing with it.

  Args:
    workdir: a training workdir (with config.json).
    given: an optional --config; it must describe the same run (`check_same_run`), and its
      `RUNTIME_FIELDS` (and any field the saved config lacks) win over the saved ones.

  Returns:
    The run's config.
  """
  saved = load(workdir)
  if given is None:
    return saved
  given = given.copy_and_resolve_references()
  check_same_run(given, saved, source=os.path.join(workdir, CONFIG_FILE))
  merged = saved.to_dict()
  flat_saved = _flat(merged)
  for name, value in _flat(given.to_dict()).items():
    if name not in flat_saved or is_runtime_field(name):
      node = merged
      *parents, leaf = name.split(".")
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = value
  return ml_collections.ConfigDict(merged)
