"""Command-line arguments the gallery gives each example (sphinx-gallery's ``reset_argv``).

The examples are plain scripts that save their pictures where a reader
running them wants them (``docs/digits_tree.png`` and so on).  In the
gallery the figures are taken from matplotlib directly, so the files go to
a scratch folder instead, and the committed pictures are never overwritten.
The Fashion-MNIST example is kept short in the gallery (2,000 images, 8
epochs, about a minute); run it by hand for its full default setting.
"""

import tempfile
from pathlib import Path

#: Extra arguments per example file name (besides ``--output``).
ARGUMENTS = {
    "fashion_mnist_tree.py": ["--n-samples", "2000", "--max-epochs", "8"],
}

#: Examples that save a picture and take ``--output``.
SAVES_PICTURE = ("quickstart.py", "digits_tree.py", "fashion_mnist_tree.py")


def example_arguments(gallery_conf, script_vars):
    """The ``sys.argv[1:]`` an example runs with in the gallery.

    Parameters
    ----------
    gallery_conf : dict
        sphinx-gallery's configuration (unused).
    script_vars : dict
        sphinx-gallery's variables of the example; ``src_file`` is its path.

    Returns
    -------
    list of str
    """
    name = Path(script_vars["src_file"]).name
    argv = list(ARGUMENTS.get(name, []))
    if name in SAVES_PICTURE:
        scratch = Path(tempfile.gettempdir()) / "skcohiclust-gallery"
        scratch.mkdir(exist_ok=True)
        argv += ["--output", str(scratch / name.replace(".py", ".png"))]
    return argv


#: The order of the examples in the gallery: first steps first.
ORDER = (
    "quickstart.py",
    "digits_tree.py",
    "fashion_mnist_tree.py",
    "grid_search_depth.py",
    "pipeline_tabular.py",
    "tree_similarity_affinity.py",
)


class ExampleOrder:
    """Sort key of the examples (sphinx-gallery's ``within_subsection_order``): :data:`ORDER`, then by name.

    Parameters
    ----------
    src_dir : str
        The gallery's source folder (unused).
    """

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        """The sort key of ``filename``."""
        return (ORDER.index(filename) if filename in ORDER else len(ORDER), filename)

    def __repr__(self):
        return "ExampleOrder"
