"""The package's imports point one way (data → model → search → metrics → ... → CLI), no cycles.

Every ``seq2seq`` import is read from the source with ``ast``: module level, inside functions
and under ``TYPE_CHECKING`` alike, since each of them ties one module to another.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "seq2seq"

# Lowest first. A module may import from its own layer and the layers before it, never from a
# later one. config/device/files are leaves every layer may use; viz draws what training and
# inference hand it, and knows nothing of either. fast (the speed layer) sits above the model
# and search: its kernels subclass the model's modules and the entry points apply it
# (fast.kernels.accelerate), so neither the model nor search knows it exists.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "device", "files", "provenance", "roofline"),
    ("data",),
    ("model",),
    ("search",),
    ("fast",),
    ("metrics", "viz"),
    ("evaluation", "checkpoint"),
    ("training",),
    ("inference", "cli", "comparison", "explorer"),
)
LAYER_OF = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The ``seq2seq`` modules that ``path`` imports (``from a import b`` counts as ``a.b``
    where ``a.b`` is a module, else as ``a``)."""
    this = module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use an absolute seq2seq.* import"
            base = node.module or ""
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != this}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported_modules(path, set(mods)) for name, path in mods.items()}


def layer(module: str) -> int | None:
    """Rank of a module's layer; None for the package's own ``__init__``."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    part = parts[1]
    assert part in LAYER_OF, f"{module}: put seq2seq/{part} into a layer in LAYERS"
    return LAYER_OF[part]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if cycle := visit(target):
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if cycle := visit(start):
            return cycle
    return None


def test_the_walker_sees_imports_at_every_level() -> None:
    graph = import_graph()
    assert "seq2seq.search" in graph["seq2seq.evaluation"]  # module level
    assert "seq2seq.data.synthetic" in graph["seq2seq.data.dataset"]  # inside a function
    assert "seq2seq.data.dataset" in graph["seq2seq.training.reporting"]  # TYPE_CHECKING


def test_every_import_points_down_the_layers() -> None:
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer(module) is not None and (layer(target) or 0) > layer(module)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# The longest chain of imports a reader may have to follow, entry point to leaf (issue 40).
MAX_CHAIN = 12


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest import path ``[a, b, ..., leaf]`` of an acyclic ``graph``."""
    chains: dict[str, list[str]] = {}

    def chain(node: str) -> list[str]:
        if node not in chains:
            below = [chain(target) for target in sorted(graph.get(node, ()))]
            chains[node] = [node, *max(below, key=len, default=[])]
        return chains[node]

    return max((chain(node) for node in sorted(graph)), key=len)


def test_no_import_chain_is_longer_than_max_chain() -> None:
    chain = longest_chain(import_graph())
    assert len(chain) <= MAX_CHAIN, f"{len(chain)} modules deep: " + " → ".join(chain)


def test_longest_chain_follows_the_deepest_path() -> None:
    graph = {"a": {"b", "c"}, "b": set(), "c": {"d"}, "d": set()}
    assert longest_chain(graph) == ["a", "c", "d"]
