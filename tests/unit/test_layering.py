"""The layout is the design: no import cycle between the harness's modules, and each subpackage
imports only the layers below it (README, "Layout"). Imports are read with `ast`, so the check
sees every import, at the top of a file or inside a function."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "harness"

# What each part of the harness may import, besides itself. `harness.sse` and `harness.compat`
# are leaves. The front doors (tasks.py, noxfile.py) compose the command-line entry points.
ALLOWED = {
    "compat": set(),
    "sse": set(),
    "runtime": {"compat"},
    "mock": {"compat", "sse"},
    "pytest": {"compat", "sse", "runtime", "mock"},
    "checks": {"compat", "sse", "runtime"},
    "perf": {"compat", "sse", "runtime"},
    "dev": {"compat", "sse", "runtime", "checks", "perf", "pytest"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """The harness modules a file imports (`from harness.x import y` counts `harness.x.y` when y
    is a module, else `harness.x`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return {name for name in found if name in MODULES}


def part(module: str) -> str:
    """The layer a module belongs to: its subpackage, or the leaf module itself."""
    return module.split(".")[1] if "." in module else "harness"


GRAPH = {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = sorted(name for name in MODULES if name != "harness" and part(name) not in ALLOWED)
    assert not unknown, f"add these to the layering table (and the README's Layout): {unknown}"


def test_no_import_cycle_between_harness_modules() -> None:
    try:
        order = list(graphlib.TopologicalSorter(GRAPH).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")
    assert set(order) == set(MODULES)


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name != "harness"))
def test_modules_import_only_downward(module: str) -> None:
    layer = part(module)
    upward = sorted(
        target
        for target in GRAPH[module]
        if part(target) != layer and part(target) not in ALLOWED.get(layer, set())
    )
    assert not upward, f"{module} ({layer}) imports a layer above or beside it: {upward}"


@pytest.mark.parametrize("front_door", ["tasks.py", "noxfile.py"])
def test_front_doors_compose_only(front_door: str) -> None:
    imported = {part(name) for name in imported_modules(ROOT / front_door)}
    assert imported <= {"dev", "checks", "perf", "runtime"}, f"{front_door} imports {imported}"


def test_the_package_never_imports_the_tests() -> None:
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{name}: {m}" for m in modules if m.split(".")[0] == "tests"]
    assert not offenders, offenders


def test_the_checker_sees_a_cycle() -> None:
    # The cycle check above must be able to fail: a two-module loop is reported.
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).static_order())


# --------------------------------------------------------------------------- the Rust crate

CRATE = ROOT / "proxy"


def rust_module_path(source_root: Path, path: Path) -> tuple[str, ...]:
    """src/a/b.rs and src/a/b/mod.rs are `a::b`; lib.rs and main.rs are the crate root."""
    parts = path.relative_to(source_root).with_suffix("").parts
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in {"lib", "main"}):
        parts = parts[:-1]
    return parts


def rust_paths_used(text: str) -> list[tuple[str, ...]]:
    """Every `crate::…` and `super::…` path in a file, with `use` groups `{a, b::c}` spread out
    (one level deep, which is all rustfmt leaves in this crate). Comments are dropped first."""
    text = re.sub(r"//[^\n]*", "", text)
    paths: list[tuple[str, ...]] = []
    for prefix, group in re.findall(r"\b((?:crate|super|self)(?:::\w+)*)::\{([^{}]*)\}", text):
        for item in group.split(","):
            item = item.strip().split(" as ")[0]
            if item and item != "self":
                paths.append((*prefix.split("::"), *item.split("::")))
            elif item == "self":
                paths.append(tuple(prefix.split("::")))
    for path in re.findall(r"\b(?:crate|super)(?:::\w+)+", text):
        paths.append(tuple(path.split("::")))
    return paths


def crate_graph(source_root: Path) -> dict[str, set[str]]:
    """File -> the files of the same crate it refers to (the longest module prefix of each path
    that is a file). A `mod x;` declaration is not a reference; `pub use x::Y` is."""
    files = {rust_module_path(source_root, p): p for p in sorted(source_root.rglob("*.rs"))}
    # main.rs is a crate of its own (it uses the library as `switchyard::`), and so is each bin.
    files = {m: p for m, p in files.items() if "bin" not in m and p.name != "main.rs"}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        here = module  # `super::` is the parent of this module, whether a/b.rs or a/b/mod.rs
        targets: set[str] = set()
        for used in rust_paths_used(path.read_text()):
            if used[0] == "crate":
                absolute = used[1:]
            else:  # super:: (and self::) relative to the file's module
                base = list(here)
                while used and used[0] in {"super", "self"}:
                    if used[0] == "super":
                        base = base[:-1]
                    used = used[1:]
                absolute = (*base, *used)
            for length in range(len(absolute), -1, -1):
                target = files.get(absolute[:length])
                if target is not None:
                    if target != path:
                        targets.add(str(target.relative_to(source_root.parent)))
                    break
        graph[str(path.relative_to(source_root.parent))] = targets
    return graph


def rust_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def test_no_import_cycle_between_crate_files() -> None:
    cycle = rust_cycle(crate_graph(CRATE / "src"))
    assert cycle is None, f"import cycle between files of the crate: {' -> '.join(cycle)}"


# A request reads in one direction: each folder of the crate refers only to folders after it.
CRATE_LAYERS = ["server", "api", "gateway", "wire", "store", "telemetry", "config", "shared"]


def crate_layer(file: str) -> str:
    parts = Path(file).parts  # ("src", "gateway", "relay", "stream.rs")
    return parts[1] if len(parts) > 2 else Path(parts[1]).stem


def test_every_crate_file_is_in_a_known_folder() -> None:
    graph = crate_graph(CRATE / "src")
    stray = sorted(f for f in graph if crate_layer(f) not in {*CRATE_LAYERS, "lib"})
    assert not stray, f"files outside the crate's layers {CRATE_LAYERS}: {stray}"


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    rank = {layer: index for index, layer in enumerate(CRATE_LAYERS)}
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        if crate_layer(source) in rank
        for target in targets
        if crate_layer(target) in rank and rank[crate_layer(target)] < rank[crate_layer(source)]
    )


def test_crate_layers_only_call_down() -> None:
    upward = upward_edges(crate_graph(CRATE / "src"))
    assert not upward, "a lower layer refers to a higher one:\n" + "\n".join(upward)


def test_the_layer_check_sees_an_upward_reference(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for name, text in {
        "store/ledger.rs": "use crate::api::state::AppState;",
        "api/state.rs": "",
    }.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    assert upward_edges(crate_graph(source)) == ["src/store/ledger.rs -> src/api/state.rs"]


@pytest.mark.parametrize(
    ("sources", "cycle"),
    [
        ({"a.rs": "use crate::b::X;", "b.rs": "use crate::a::Y;"}, True),
        ({"a.rs": "use crate::{b::X, c};", "b.rs": "", "c.rs": "fn f() { crate::a::g() }"}, True),
        ({"a/mod.rs": "", "a/x.rs": "use super::y::Z;", "a/y.rs": "use crate::a::x::W;"}, True),
        ({"a.rs": "use crate::b::X; // crate::c", "b.rs": "", "c.rs": "use crate::a::Q;"}, False),
    ],
    ids=["use", "group-and-inline-path", "super", "comment-ignored"],
)
def test_the_crate_checker_reads_paths(
    tmp_path: Path, sources: dict[str, str], cycle: bool
) -> None:
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert (rust_cycle(crate_graph(tmp_path)) is not None) is cycle
