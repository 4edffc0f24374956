"""Validate the docstrings of skweight's public API with numpydoc (``make lint``).

Every name in the ``__all__`` of the public modules (``PUBLIC_MODULES`` of
``docs/conf.py``, the modules of the API reference) is checked with
``numpydoc.validate.validate``, and so is every public method and property
of a public class that skweight defines: in the class itself or in one of
skweight's bases (e.g. ``predict`` of ``skweight._fit.base.BaseCNN``, checked
as ``skweight.CNNClassifier.predict``), not one it inherits from skorch, torch
or scikit-learn. numpydoc reads the docstring at run time, so the estimators'
shared entries (``%(name)s``, filled by ``skweight._docstrings.fill_doc``)
are checked as a reader sees them.

Module-level data (the ready-made scorers, constants) is documented by
``#:`` comments that only Sphinx reads; it is counted as skipped.

The checks to run are those of ``[tool.numpydoc_validation]`` in
``pyproject.toml``: ``checks = ["all", "ES01", ...]`` runs all but the
listed codes, ``exclude`` lists regular expressions of names left out, and
``skip_on_members`` (this script's own key) lists checks not run on methods
and properties. Each error prints as ``name: CODE message``; the exit status
is 1 if there is any, and a last line (on stderr) counts them per code.

Usage::

    python docs/check_docstrings.py            # the configured checks
    python docs/check_docstrings.py --all      # every check, ignoring pyproject.toml
"""

import argparse
import ast
import collections
import importlib
import inspect
import os
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: numpydoc depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def public_modules(conf=ROOT / "docs" / "conf.py"):
    """Return ``PUBLIC_MODULES`` of ``docs/conf.py``, read without importing it.

    Parameters
    ----------
    conf : pathlib.Path, default=ROOT / "docs" / "conf.py"
        The Sphinx configuration that lists the public modules.

    Returns
    -------
    list of str
        The names of the public modules.
    """
    tree = ast.parse(conf.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "PUBLIC_MODULES"
            for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError(f"no PUBLIC_MODULES in {conf}")


def _is_skweight(obj):
    module = getattr(obj, "__module__", None) or ""
    return module == "skweight" or module.startswith("skweight.")


def _members(cls):
    """Yield the names of the public methods and properties skweight defines on ``cls``."""
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((klass for klass in cls.__mro__ if name in vars(klass)), None)
        if owner is None or not _is_skweight(owner):
            continue
        attr = vars(owner)[name]
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, property) or inspect.isfunction(attr):
            yield name


def objects(modules):
    """Return the qualified names to validate, and those skipped as data.

    Parameters
    ----------
    modules : list of str
        The public modules; each one's ``__all__`` lists its public names.

    Returns
    -------
    names : list of (str, bool)
        The public functions and classes, and the public methods and
        properties skweight defines on the classes (as
        ``"module.Class.member"``), each with whether it is such a member.
    skipped : list of str
        The public names of data (scorers, constants) that numpydoc cannot
        read the documentation of.
    """
    names, skipped = [], []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for public in sorted(set(getattr(module, "__all__", ())) - {"__version__"}):
            obj = getattr(module, public)
            qualified = f"{module_name}.{public}"
            if inspect.isclass(obj):
                names.append((qualified, False))
                names += [(f"{qualified}.{member}", True) for member in _members(obj)]
            elif inspect.isroutine(obj):
                names.append((qualified, False))
            else:
                skipped.append(qualified)
    return names, skipped


def main(argv=None):
    """Validate the docstrings and print the errors.

    Parameters
    ----------
    argv : list of str, optional
        The command-line arguments; ``sys.argv[1:]`` when ``None``.

    Returns
    -------
    int
        The exit status: 1 if any docstring has an error, else 0.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true",
                        help="run every check, ignoring pyproject.toml")
    args = parser.parse_args(argv)

    # The estimators import torch: one thread is enough to read docstrings.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    from numpydoc.hooks.validate_docstrings import parse_config
    from numpydoc.validate import ERROR_MSGS, validate

    config = parse_config(ROOT)
    checks = set(ERROR_MSGS) if args.all else config["checks"]
    exclude = None if args.all else config["exclude"]
    with open(ROOT / "pyproject.toml", "rb") as file:
        own = tomllib.load(file).get("tool", {}).get("numpydoc_validation", {})
    skip_on_members = set(own.get("skip_on_members", ()))
    if skip_on_members - set(ERROR_MSGS):
        unknown = sorted(skip_on_members - set(ERROR_MSGS))
        raise ValueError(f"unknown codes in skip_on_members: {unknown}")
    member_checks = checks if args.all else checks - skip_on_members

    names, skipped = objects(public_modules())
    if exclude is not None:
        skipped += [name for name, _ in names if exclude.search(name)]
        names = [(name, member) for name, member in names if not exclude.search(name)]
    counts = collections.Counter()
    for name, is_member in names:
        for code, message in validate(name)["errors"]:
            if code in (member_checks if is_member else checks):
                counts[code] += 1
                print(f"{name}: {code} {message}")

    summary = ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "none"
    print(f"{len(names)} objects validated ({len(skipped)} public names skipped); "
          f"errors: {summary}", file=sys.stderr)
    return 1 if counts else 0


if __name__ == "__main__":
    sys.exit(main())
