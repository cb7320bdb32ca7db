"""The package's module graph has no cycle (module-level imports; a function-level import is
a deliberate deferral and does not count)."""
from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "lcc_jax"


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The lcc_jax modules ``path`` imports at module level (``from a import b``: a.b if it is a
  module, else a)."""
  found = set()
  for node in ast.parse(path.read_text()).body:
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        full = f"{node.module}.{alias.name}"
        found.add(full if full in modules else node.module)
  return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
  paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  return {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    state[node] = "done"
    stack.pop()
    return []

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return []


def test_the_cycle_finder_finds_a_cycle():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_the_package():
  graph = _graph()
  assert "lcc_jax.train_lib" in graph and "lcc_jax.assembly" in graph["lcc_jax.train_lib"]
  assert _cycle(graph) == []


def test_the_evaluation_tool_does_not_import_the_training_loop():
  graph = _graph()
  reached, todo = set(), [n for n in graph if n.startswith("lcc_jax.evaluat")]
  while todo:
    node = todo.pop()
    if node not in reached:
      reached.add(node)
      todo += graph[node]
  assert not reached & {"lcc_jax.train_lib", "lcc_jax.train_loop"}
