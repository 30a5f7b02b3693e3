"""What each clustering method trains on the shared trainer: one :class:`Objective` per method.

* :class:`CoHiClustObjective`: the soft binary tree of CoHiClust.
* :class:`ContrastiveClusteringObjective`: Contrastive Clustering's flat
  cluster head with instance- and cluster-level contrast.
* :class:`ConCURLObjective`: ConCURL's exemplar, population and consensus
  consistency on learnable prototypes.
* :class:`SeCuObjective`: SeCu's stable cluster discrimination with
  stored assignments under a global entropy constraint.

See :class:`Objective` for the hooks the trainer calls and where a batch's
statistics are reduced.
"""

from .base import Objective
from .cohiclust import CoHiClustObjective
from .contrastive_clustering import ContrastiveClusteringObjective
from .prototypes import ConCURLObjective, SeCuObjective

__all__ = ["Objective", "CoHiClustObjective", "ContrastiveClusteringObjective", "ConCURLObjective", "SeCuObjective"]
