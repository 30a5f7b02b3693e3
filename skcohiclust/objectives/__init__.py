"""What each clustering method trains on the shared trainer: one :class:`Objective` per method.

* :class:`CoHiClustObjective`: the soft binary tree of CoHiClust.
* :class:`ContrastiveClusteringObjective`: Contrastive Clustering's flat
  cluster head with instance- and cluster-level contrast.

See :class:`Objective` for the hooks the trainer calls and where a batch's
statistics are reduced.
"""

from .base import Objective
from .cohiclust import CoHiClustObjective
from .contrastive_clustering import ContrastiveClusteringObjective

__all__ = ["Objective", "CoHiClustObjective", "ContrastiveClusteringObjective"]
