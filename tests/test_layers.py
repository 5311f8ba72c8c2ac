"""The package is layered: no import cycle between modules, each package imports only the layers
below it, and inference's layers (settings, stages, inferer, block, drivers, jobs) stay in order."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "emseg_monai"
# lower numbers are lower layers; a module may import its own layer or lower ones
LAYERS = {
    "errors": 0,
    "options": 1,
    "reporting": 2,
    "io": 2,
    "transforms": 3,
    "data": 4,
    "networks": 4,
    "evaluation": 5,
}
LAYERS.update({"handlers": 5, "inference": 6, "workflows": 7, "training": 8, "exchange": 8, "demo": 9, "napari": 9})
LAYERS.update({"cli_args": 9, "cli": 10})
INFERENCE = {"backends": 0, "settings": 1, "predict": 1, "stages": 2, "inferer": 3, "block": 3}
INFERENCE.update({"local": 4, "distributed": 4, "jobs": 5})


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """emseg_monai module -> emseg_monai modules it imports (anywhere in it, functions included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found.update(t for t in targets if t in modules and t.startswith("emseg_monai"))
        graph[name] = found - {name}
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def test_packages_import_only_lower_layers():
    wrong = [
        (a, b)
        for a, targets in imports().items()
        for b in targets
        if not a.endswith("__init__") and layer(b) > layer(a)
    ]
    assert not wrong, wrong


def test_no_import_cycle_between_modules():
    graph = {a: {b for b in targets if b.count(".") > 1 or b in ("emseg_monai",)} for a, targets in imports().items()}
    packages = {m for m in graph if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()}
    graph = {a: targets - packages for a, targets in graph.items() if a not in packages}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(path + [nxt])}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_inference_layers_stay_in_order():
    wrong = []
    for a, targets in imports().items():
        if a.startswith("emseg_monai.inference.") and a.split(".")[-1] in INFERENCE:
            for b in targets:
                if (
                    b.startswith("emseg_monai.inference.")
                    and INFERENCE[b.split(".")[-1]] >= INFERENCE[a.split(".")[-1]]
                ):
                    wrong.append((a, b))
    assert not wrong, wrong
