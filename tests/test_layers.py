"""The package's layering: no import cycles, modules of at most 500 lines, every package installed."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "anonymax")


def _modules() -> dict[str, str]:
  out = {}
  for directory, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(directory, f)
        name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        out[name.removesuffix(".__init__")] = path
  return out


def _imports(path: str, modules) -> set[str]:
  """The anonymax modules `path` imports (top level and inside functions)."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    else:
      continue
    for n in names:
      while n and n not in modules:
        n = n.rpartition(".")[0]
      if n:
        found.add(n)
  return found


def test_no_module_imports_itself_back():
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    deps = _imports(path, modules) - {name}
    if path.endswith("__init__.py"):  # a package re-exporting its children
      deps = {d for d in deps if not d.startswith(name + ".")}
    graph[name] = {d for d in deps if not modules[d].endswith("__init__.py")}

  def on_a_cycle(start):
    stack, seen = list(graph[start]), set()
    while stack:
      node = stack.pop()
      if node == start:
        return True
      if node not in seen:
        seen.add(node)
        stack.extend(graph[node])
    return False

  cyclic = sorted(name for name in graph if on_a_cycle(name))
  assert not cyclic, f"import cycles through {cyclic}"


@pytest.mark.parametrize("layer, sibling", [("data", "oracles"), ("oracles", "data")])
def test_data_and_oracles_never_import_each_other(layer, sibling):
  modules = _modules()
  for name, path in modules.items():
    if name.startswith(f"anonymax.{layer}"):
      imported = _imports(path, modules)
      assert not any(i.startswith(f"anonymax.{sibling}") for i in imported), name


def test_modules_stay_under_500_lines():
  long = {n: sum(1 for _ in open(p)) for n, p in _modules().items()}
  assert max(long.values()) <= 500, sorted(long.items(), key=lambda kv: -kv[1])[:3]


def test_every_package_is_installed():
  """pyproject.toml lists its packages one by one (configs/ is mapped in): none may be missing."""
  tomllib = pytest.importorskip("tomllib")
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
  on_disk = {n for n, p in _modules().items() if p.endswith("__init__.py")}
  assert on_disk | {"anonymax.configs"} == listed
