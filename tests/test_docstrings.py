"""Docstrings: every parameter is documented, nothing is left unfilled, and
every example runs."""

import doctest
import importlib
import inspect
import pkgutil
import re

import pytest

import skweight
from skweight import CNNClassifier, CNNRegressor, CNNSegmenter
from skweight._docstrings import fill_doc

#: Every module of the package, public and private, subpackages included.
MODULES = ["skweight", *sorted(info.name for info in pkgutil.walk_packages(
    skweight.__path__, prefix="skweight."))]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    # doctest skips what it cannot find (an object another module defines, a
    # docstring replaced by a decorator): every example written in the file
    # must be among those it runs. A ">>> #" line is a comment, not an example.
    written = len(re.findall(r"^\s*>>> ?(?!#)\S", inspect.getsource(module), re.M))
    result = doctest.testmod(module, verbose=False,
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted == written


@pytest.mark.parametrize("Estimator", [CNNClassifier, CNNRegressor, CNNSegmenter])
def test_every_constructor_parameter_is_documented(Estimator):
    doc = Estimator.__doc__
    assert "%(" not in doc
    for name in inspect.signature(Estimator).parameters:
        documented = "**kwargs" if name == "kwargs" else name
        assert re.search(rf"^    {re.escape(documented)}\b", doc, flags=re.M), name
    for method in ("fit", "partial_fit"):
        method_doc = getattr(Estimator, method).__doc__
        assert "%(" not in method_doc and "Parameters" in method_doc


def test_defaults_in_the_docs_are_the_real_defaults():
    for Estimator in (CNNClassifier, CNNRegressor, CNNSegmenter):
        params = inspect.signature(Estimator).parameters
        for name in ("lr", "max_epochs", "batch_size"):
            assert f"{name} : " in Estimator.__doc__
            line = re.search(rf"^    {name} : .*default=(\S+)$", Estimator.__doc__, re.M)
            assert float(line.group(1)) == params[name].default


def test_fill_doc_indents_entries_for_methods():
    def f():
        pass

    # The entry takes the placeholder's indentation.
    f.__doc__ = ("Do.\n\n        Parameters\n        ----------\n"
                 "        %(verbose)s\n        ")
    fill_doc()(f)
    assert "\n        verbose : int, default=0\n            ``1`` prints" in f.__doc__


def test_metric_docs_share_the_same_mechanism():
    from skweight.metrics import dice_score, mean_surface_distance

    for func in (dice_score, mean_surface_distance):
        assert "%(" not in func.__doc__ and "ignore_index : int" in func.__doc__

    def g():
        pass

    g.__doc__ = "Do.\n\n    Parameters\n    ----------\n    %(verbose)s\n    "
    fill_doc(entries={"verbose": "verbose : bool\n    Mine."})(g)
    assert "verbose : bool\n        Mine." in g.__doc__  # the given entry wins


def test_no_public_docstring_keeps_a_placeholder():
    import skweight
    from skweight import augment, datasets, display, losses, metrics, nets, weighting

    modules = (skweight, augment, datasets, display, losses, metrics, nets, weighting)
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            docs = [obj.__doc__ or ""]
            if inspect.isclass(obj):
                docs += [getattr(m, "__doc__", None) or ""
                         for _, m in inspect.getmembers(obj, inspect.isfunction)
                         if m.__module__.startswith("skweight")]
            for doc in docs:
                assert not re.search(r"%\(\w+\)s", doc), f"{module.__name__}.{name}"


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "FocalLoss", "LDAMLoss",
                                  "LogitAdjustedLoss"])
def test_element_wise_losses_share_their_parameter_docs(name):
    from skweight import losses

    doc = getattr(losses, name).__doc__
    # Written once (losses/_docs.py), the same words in every loss.
    assert 'count used by ``reduction="mean"``. It may lie outside [0, K).' in doc
    assert "the number of non-ignored elements (not by the sum of weights)." in doc
