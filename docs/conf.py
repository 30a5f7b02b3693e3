"""Sphinx configuration of the skcohiclust documentation.

Build it from the repository root (warnings are errors)::

    python -m sphinx -W docs docs/_build/html                      # runs every example (minutes)
    python -m sphinx -W -D plot_gallery=0 docs docs/_build/html    # fast: examples shown, not run

or ``make docs`` / ``make docs-fast``.  ``tests/test_docs.py`` runs the fast build.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # _gallery.py, the gallery's helpers
sys.path.insert(0, str(DOCS.parent))  # the package of this checkout, installed or not

import skcohiclust  # noqa: E402

project = "skcohiclust"
author = "skcohiclust developers"
copyright = "skcohiclust developers"
release = skcohiclust.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py"]

# -- API reference: autosummary pages whose docstrings numpydoc renders ---------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc "Parameters" sections say the types
numpydoc_show_class_members = False  # the class template lists the members instead
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# every public docstring documents its parameters and returns (warnings, so errors with -W); the fields of
# the dataclasses and named tuples are their constructors' parameters, so they are documented as Parameters
numpydoc_validation_checks = {"GL08", "PR01", "PR02", "PR07", "RT01"}
add_module_names = False

# -- Markdown guides (MyST) ----------------------------------------------------------------------
myst_heading_anchors = 3

# -- Gallery: examples/ ---------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # every example runs in a full build; ``-D plot_gallery=0`` shows their code without running them
    "filename_pattern": r".*\.py$",
    # command-line arguments of each example in the gallery: see docs/_gallery.py
    "reset_argv": "_gallery.example_arguments",
    "within_subsection_order": "_gallery.ExampleOrder",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "show_memory": False,
    "min_reported_time": 5,
    "matplotlib_animations": False,
    "capture_repr": (),
}

# -- HTML ----------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skcohiclust {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# the left sidebar only where there is something to navigate: the API pages and the examples
html_sidebars = {page: [] for page in ("index", "user_guide", "hierarchy", "long_runs", "api", "changelog")}
html_show_sourcelink = False

# the examples find the Fashion-MNIST files where the datasets module looks; nothing here changes that
os.environ.setdefault("MPLBACKEND", "Agg")


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_*_request`` methods (metadata routing)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    """Sphinx hook: connect the member filter."""
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
