"""skcohiclust: deep hierarchical clustering with CoHiClust, the scikit-learn way, beside flat peers."""

from .callbacks import Callback, EarlyStopping
from .estimator import CoHiClust
from .flat import ConCURL, ContrastiveClustering, SeCu
from .plotting import plot_level_sizes, plot_tree  # matplotlib is imported only when called

__all__ = [
    "CoHiClust",
    "ContrastiveClustering",
    "ConCURL",
    "SeCu",
    "Callback",
    "EarlyStopping",
    "plot_tree",
    "plot_level_sizes",
]
__version__ = "0.1.0"
