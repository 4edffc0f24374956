"""Sphinx configuration of the skweight documentation.

Build with ``make docs`` (or ``sphinx-build -b html docs docs/_build/html``).
The build is offline: no intersphinx, no remote images, scripts or fonts,
and the formulas are shown as text rather than through a MathJax CDN.
The gallery runs every ``examples/plot_*.py`` on one torch thread.
"""

import os
import re
import sys
from pathlib import Path

# One thread for torch and BLAS while the gallery runs: the example networks
# are small, and the build machines have few cores shared by several jobs.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402 (after the thread settings)

torch.set_num_threads(1)

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from docutils.nodes import SkipNode  # noqa: E402
from skorch import NeuralNet  # noqa: E402

import skweight  # noqa: E402

# -- Project -----------------------------------------------------------------

project = "skweight"
author = "the skweight developers"
copyright = "2025, the skweight developers"  # noqa: A001 (Sphinx's name)
release = skweight.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "sphinx_copybutton",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]
default_role = "literal"

# -- API reference -----------------------------------------------------------

autosummary_generate = True
autodoc_default_options = {"members": True}
autodoc_typehints = "none"
# numpydoc renders the sections; the autosummary templates list the members.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- Markdown pages (the user guide) -------------------------------------------

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# -- Gallery -------------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Only plot_*.py scripts are run and shown; other scripts in examples/
    # (work in progress, helpers) are left out of the gallery altogether.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"^(?!plot_)",  # matched against the file name
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("skweight",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skweight": None},
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "remove_config_comments": True,
    # The scripts print what they want shown; no repr of a cell's last value.
    "capture_repr": (),
    "download_all_examples": False,
    "show_memory": False,
    "min_reported_time": 1,
    # The summary pages of run times load jQuery and DataTables from CDNs;
    # each example's page still states its own run time.
    "write_computation_times": False,
    # A failing example becomes a warning (counted by `make docs`) rather
    # than an aborted build, so one broken script does not hide the site.
    "only_warn_on_example_error": True,
}

# -- HTML ----------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"skweight {release}"
html_static_path = ["_static"]
html_css_files = ["skweight.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
# No section navigation on the landing pages and the examples: the examples'
# code (92-character lines) and figures get the width instead.
html_sidebars = {"index": [], "getting_started": [], "api": [], "user_guide": [],
                 "auto_examples/*": []}

# -- Offline formulas ------------------------------------------------------------

# Sphinx's default math renderer loads MathJax from a CDN. The few formulas
# in the docstrings are shown as TeX in a code span instead, which needs
# nothing from outside.


def _visit_inline_math(translator, node):
    translator.body.append(f'<code class="math">{translator.encode(node.astext())}</code>')
    raise SkipNode


def _visit_block_math(translator, node):
    translator.body.append(f'<pre class="math">{translator.encode(node.astext())}</pre>')
    raise SkipNode


html_math_renderer = "plain_text"

# -- User guide pages ------------------------------------------------------------

# The user guide lists these pages first, in this order; any other Markdown
# page in docs/ follows in alphabetical order, so that a page added by
# another change is never left out of the site.
USER_GUIDE_ORDER = [
    "weights",
    "composition",
    "regression",
    "segmentation",
    "multilabel",
    "augmentation",
    "pretrained",
    "scale-out",
    "large-data",
]
_USER_GUIDE_MARKER = ".. user-guide-pages"
# Markdown pages of docs/ that are not user guide pages (the top level lists them).
_NOT_USER_GUIDE = {"changelog"}


def user_guide_pages():
    """Return the Markdown pages of docs/ in the user guide's order."""
    present = {path.stem for path in DOCS.glob("*.md")} - _NOT_USER_GUIDE
    ordered = [name for name in USER_GUIDE_ORDER if name in present]
    return ordered + sorted(present - set(ordered))


def _fill_user_guide(app, docname, source):
    if docname != "user_guide":
        return
    entries = "\n".join(f"   {name}" for name in user_guide_pages())
    source[0] = source[0].replace(_USER_GUIDE_MARKER, entries)


# -- Members shown on the API pages -----------------------------------------------

# The estimators inherit some 80 public methods from skorch and the losses
# and networks torch's nn.Module interface: a class page shows what a user
# calls and skweight defines (inherited from skweight's own bases included),
# not the frameworks' whole API, nor skorch's training hooks (train_step,
# get_loss, ...) that skweight overrides under skorch's contract.
_USER_FACING = {"fit", "partial_fit", "predict", "predict_proba", "predict_log_proba",
                "score", "get_params", "set_params", "save_params", "load_params",
                "check_is_fitted", "history_"}
_SKORCH_HOOKS = {name for name in dir(NeuralNet) if not name.startswith("_")}
_SKORCH_HOOKS |= {"initialized_", "virtual_params_"}  # skorch's bookkeeping
_SKORCH_HOOKS -= _USER_FACING
# torch's hook for the module's repr: public by name, of no use to a reader.
_ALWAYS_SKIPPED = {"extra_repr"}


def _function_of(obj):
    return getattr(obj, "fget", None) or getattr(obj, "__func__", None) or obj


def _owner(obj):
    """Return the class that defines the method or property ``obj``, if known."""
    function = _function_of(obj)
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    path = (getattr(function, "__qualname__", None) or "").split(".")[:-1]
    for part in path:
        module = getattr(module, part, None)
    return module if isinstance(module, type) else None


def _skip_foreign_members(app, what, name, obj, skip, options):
    if what not in ("class", "exception"):
        return None
    if name in _ALWAYS_SKIPPED:
        return True
    if skip or name in _USER_FACING:
        return None
    # The losses and networks are torch modules: their forward is their API.
    owner = _owner(obj)
    if name in _SKORCH_HOOKS and not (owner and issubclass(owner, torch.nn.Module)):
        return True
    module = getattr(_function_of(obj), "__module__", None) or ""
    return None if module.startswith("skweight") else True


# Docstrings inherited from scikit-learn (e.g. the classifier's ``score``)
# cross-reference scikit-learn's own user guide, which is not here: their
# :ref: roles become plain text.
_REF_ROLE = re.compile(r":ref:`([^`<]+?)\s*(?:<[^`>]*>)?`")


def _unlink_foreign_refs(app, what, name, obj, options, lines):
    module = getattr(_function_of(obj), "__module__", None) or ""
    if not module.startswith("skweight"):
        lines[:] = [_REF_ROLE.sub(r"\1", line) for line in lines]


# -- Is every public name in the API reference? ----------------------------------

PUBLIC_MODULES = ["skweight", "skweight.losses", "skweight.metrics", "skweight.weighting",
                  "skweight.sampling", "skweight.datasets", "skweight.augment",
                  "skweight.nets", "skweight.display", "skweight.exceptions"]


def api_entries(path=DOCS / "api.rst"):
    """Return the names listed in the autosummary tables of ``api.rst``."""
    entries, module, in_table = set(), None, False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(".. currentmodule::"):
            module = stripped.split("::")[1].strip()
        if stripped.startswith(".. "):
            in_table = stripped.startswith(".. autosummary::")
        elif in_table and line.startswith("   ") and stripped and stripped[0] != ":":
            entries.add(f"{module}.{stripped}")
    return entries


def _check_api_complete(app):
    import importlib

    from sphinx.util import logging

    listed = api_entries()
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for public in sorted(set(module.__all__) - {"__version__"}):
            if f"{name}.{public}" not in listed:
                logging.getLogger(__name__).warning(
                    "%s.%s is public (in __all__) but missing from docs/api.rst",
                    name, public,
                )


def setup(app):
    """Register the offline math renderer, the user guide's pages and the checks."""
    app.add_html_math_renderer(
        "plain_text",
        inline_renderers=(_visit_inline_math, None),
        block_renderers=(_visit_block_math, None),
    )
    app.connect("source-read", _fill_user_guide)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("autodoc-process-docstring", _unlink_foreign_refs)
    app.connect("builder-inited", _check_api_complete)
