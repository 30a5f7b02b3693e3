"""Every public name carries a docstring, and the API reference is current."""

import importlib
import inspect
from pathlib import Path

import pytest

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
    "skcohiclust.training",
    "skcohiclust.checkpoints",
    "skcohiclust.callbacks",
    "skcohiclust.tree_init",
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


def test_api_reference_is_current():
    import sys

    docs = Path(__file__).resolve().parents[1] / "docs"
    sys.path.insert(0, str(docs))
    try:
        make_api = importlib.import_module("make_api")
    finally:
        sys.path.pop(0)
    assert (docs / "api.md").read_text() == make_api.render(), "run: python docs/make_api.py"
