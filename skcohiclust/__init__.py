"""skcohiclust: deep hierarchical clustering with CoHiClust, the scikit-learn way."""

from .callbacks import Callback, EarlyStopping
from .estimator import CoHiClust

__all__ = ["CoHiClust", "Callback", "EarlyStopping"]
__version__ = "0.1.0"
