"""The Python of the user guide names what exists.

Every ```python block of docs/*.md and README.md is parsed; its imports are
run and each imported name must exist, and so must every attribute it reads
from an imported module or object (``skweight.metrics.dice_scorer``,
``optuna.samplers.TPESampler``). The blocks themselves are not run: they
stand for fits on the reader's data (``X``, ``y``, ``w``), or start Dask
clusters and torchrun. Names written in the text as ```skweight.x.y``` must
exist too.
"""

import ast
import importlib
import importlib.util
import pathlib
import re
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
# A block may be indented under a list item; its closing fence is indented alike.
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.M | re.S)
DOTTED = re.compile(r"`(skweight(?:\.\w+)+)(?:\([^`]*\))?`")  # with a call's "(...)"


def python_blocks(page):
    """Yield ``(line, source)``: each block's first line in the page and its code."""
    text = page.read_text(encoding="utf-8")
    for match in BLOCK.finditer(text):
        yield text.count("\n", 0, match.start()) + 2, textwrap.dedent(match.group(2))


def installed(module_name):
    # An optional package that is not installed here (dask_cuda needs CUDA)
    # cannot be checked; skweight itself always must be. A package already
    # imported is asked no further: find_spec raises for one whose module
    # replaced itself with a lazy loader (optuna_integration).
    top = module_name.split(".")[0]
    return (top == "skweight" or top in sys.modules
            or importlib.util.find_spec(top) is not None)


def member(obj, name):
    """``getattr(obj, name)``, importing the submodule ``name`` of a package."""
    try:
        return getattr(obj, name)
    except AttributeError:
        if not hasattr(obj, "__path__"):
            raise
        try:
            return importlib.import_module(f"{obj.__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"{obj.__name__} has no {name!r}") from None


def dotted(node):
    """The names of ``a.b.c`` (``["a", "b", "c"]``), or None for other expressions."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def imported_names(tree, where):
    """Run the imports of ``tree``; return the names they bind and their objects."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not installed(alias.name):
                    continue
                module = importlib.import_module(alias.name)
                if alias.asname:
                    names[alias.asname] = module
                else:  # ``import a.b`` binds ``a``
                    top = alias.name.split(".")[0]
                    names[top] = importlib.import_module(top)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{where}: relative import"
            if not installed(node.module):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                try:
                    names[alias.asname or alias.name] = member(module, alias.name)
                except AttributeError:
                    pytest.fail(f"{where}: cannot import {alias.name!r} from {node.module}")
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_python_blocks_import_and_use_names_that_exist(page):
    names = {}  # a page's blocks are read in turn: later ones use earlier imports
    for line, source in python_blocks(page):
        where = f"{page.relative_to(ROOT)}, block at line {line}"
        tree = ast.parse(source, filename=where)
        names.update(imported_names(tree, where))
        for node in ast.walk(tree):
            chain = dotted(node) if isinstance(node, ast.Attribute) else None
            if not chain or chain[0] not in names:
                continue  # the reader's own objects (X, search, ...)
            obj = names[chain[0]]
            for i, name in enumerate(chain[1:], start=2):
                try:
                    obj = member(obj, name)
                except AttributeError:
                    pytest.fail(f"{where}: {'.'.join(chain[:i])} does not exist")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_python_block_is_read(page):
    # The test above would pass on blocks the pattern misses.
    text = page.read_text(encoding="utf-8")
    assert len(list(python_blocks(page))) == text.count("```python")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_skweight_names_in_the_text_exist(page):
    for name in sorted(set(DOTTED.findall(page.read_text(encoding="utf-8")))):
        parts = name.split(".")
        obj = importlib.import_module("skweight")
        for i, part in enumerate(parts[1:], start=2):
            try:
                obj = member(obj, part)
            except AttributeError:
                pytest.fail(f"{page.relative_to(ROOT)}: {'.'.join(parts[:i])} "
                            "does not exist")
