"""The documentation: docstrings on every public name, an API reference that lists them all, a site that builds."""

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

MODULES = [
    "skcohiclust",
    "skcohiclust.tree",
    "skcohiclust.losses",
    "skcohiclust.networks",
    "skcohiclust.augment",
    "skcohiclust._base",
    "skcohiclust.flat",
    "skcohiclust.objectives",
    "skcohiclust.objectives.base",
    "skcohiclust.objectives.cohiclust",
    "skcohiclust.objectives.contrastive_clustering",
    "skcohiclust.objectives.prototypes",
    "skcohiclust.training",
    "skcohiclust.distributed",
    "skcohiclust.checkpoints",
    "skcohiclust.callbacks",
    "skcohiclust.tree_init",
    "skcohiclust.neighbors",
    "skcohiclust.metrics",
    "skcohiclust.datasets",
    "skcohiclust.hierarchy",
    "skcohiclust.plotting",
]


def _public(module):
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield name, obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
                        yield f"{name}.{attr}", member.fget if isinstance(member, property) else member


@pytest.mark.parametrize("module_name", MODULES)
def test_public_names_have_docstrings(module_name):
    module = importlib.import_module(module_name)
    assert inspect.getdoc(module), module_name
    missing = [name for name, obj in _public(module) if not inspect.getdoc(obj)]
    assert not missing, f"undocumented in {module_name}: {missing}"


def test_api_reference_lists_every_public_class_and_function():
    """docs/api.rst is written by hand (sections, order); every public class and function must be in it."""
    text = (DOCS / "api.rst").read_text()
    listed = {}
    for block in re.split(r"\.\. currentmodule:: ", text)[1:]:
        module, _, body = block.partition("\n")
        listed[module.strip()] = set(re.findall(r"^   (\w+)$", body, flags=re.MULTILINE))
    missing = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            # listed under this module, the module that defines it, or the package (re-exports)
            if not any(name in listed.get(where, set()) for where in (module_name, obj.__module__, "skcohiclust")):
                missing.append(f"{module_name}.{name}")
    assert not missing, f"not in docs/api.rst: {missing}"


def test_docs_site_builds_without_warnings(tmp_path):
    """The Sphinx site builds with warnings as errors.

    This is the fast build: ``-D plot_gallery=0`` renders every example's page
    (text and code) but runs none of them, so no model is fitted here.  The
    full build, which runs every example and renders its figures, is
    ``make docs`` (several minutes).
    """
    out = tmp_path / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-D", "plot_gallery=0", str(DOCS), str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    estimator = (out / "generated" / "skcohiclust.CoHiClust.html").read_text()
    for method in ("predict_proba", "partial_fit", "prune", "to_newick"):
        assert f"CoHiClust.{method}" in estimator
    assert "Parameters" in estimator and "Attributes" in estimator  # numpydoc sections
    gallery = (out / "auto_examples" / "index.html").read_text()
    for example in ("quickstart", "digits_tree", "fashion_mnist_tree", "grid_search_depth"):
        assert f"{example}.html" in gallery
    for page in ("index", "user_guide", "hierarchy", "long_runs", "distributed", "api", "changelog"):
        assert (out / f"{page}.html").exists(), page
    assert (out / "_images" / "digits_tree.png").exists()


#: The modules users call directly: every public function and method there has type hints (see py.typed).
TYPED_MODULES = [
    "skcohiclust.estimator",
    "skcohiclust.plotting",
    "skcohiclust.metrics",
    "skcohiclust.datasets",
    "skcohiclust.hierarchy",
    "skcohiclust.callbacks",
    "skcohiclust.checkpoints",
]


@pytest.mark.parametrize("module_name", TYPED_MODULES)
def test_public_api_has_type_hints(module_name):
    module = importlib.import_module(module_name)
    unannotated = []
    for name, obj in _public(module):
        if inspect.isclass(obj):  # constructors keep scikit-learn's style: types in the numpydoc sections
            continue
        signature = inspect.signature(obj)
        params = [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.annotation is p.empty
        ]
        if params or signature.return_annotation is signature.empty:
            unannotated.append(f"{name}({', '.join(params)})")
    assert not unannotated, f"without type hints in {module_name}: {unannotated}"


def test_package_is_marked_typed():
    assert (ROOT / "skcohiclust" / "py.typed").exists()
