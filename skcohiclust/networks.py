"""Backbones, heads and the networks that join them.

:func:`build_backbone` turns a backbone specification and an input shape
into a module; a :class:`ContrastiveNetwork` puts the input scaling, a
projection head and a clustering head around it: the tree head of
CoHiClust (:class:`CoHiClustNetwork`) or a flat cluster head
(:class:`FlatClusteringNetwork`).  Everything here is plain ``torch.nn``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .tree import n_internal_nodes

__all__ = [
    "SmallCNN",
    "MLP",
    "resnet_backbone",
    "ProjectionHead",
    "TreeHead",
    "ClusterHead",
    "PrototypeHead",
    "NetworkOutput",
    "ContrastiveNetwork",
    "CoHiClustNetwork",
    "FlatClusteringNetwork",
    "Backbone",
    "build_backbone",
    "build_network",
    "normalized_representation",
    "BACKBONES",
    "BACKBONE_PARAMS",
]

BACKBONES = ("auto", "cnn", "mlp", "resnet18", "resnet34", "resnet50")
#: The built-in convolutional backbones: they need images, and run channels-last.
CONV_BACKBONES = ("cnn", "resnet18", "resnet34", "resnet50")


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """A small VGG-style CNN for small images (8x8 to 64x64).

    ``stages`` stages of 3x3 convolutions with max-pooling between them, then
    global average pooling: the first stage is one convolution of ``width``
    channels, each later one two convolutions of twice the channels of the
    stage before (``2*width``, ``4*width``, ...).

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    width : int, default=24
        Channels of the first stage.
    stages : int, default=3
        Number of stages; the input needs at least ``2**(stages - 1)`` pixels
        a side.

    Attributes
    ----------
    output_dim : int
        Size of the representation, ``2**(stages - 1) * width``.
    """

    def __init__(self, in_channels: int, width: int = 24, stages: int = 3):
        super().__init__()
        layers = [_conv_block(in_channels, width)]
        channels = width
        for _ in range(stages - 1):
            layers += [nn.MaxPool2d(2), _conv_block(channels, 2 * channels), _conv_block(2 * channels, 2 * channels)]
            channels *= 2
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.output_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Representation of a batch of images.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(n, C, H, W)``, standardised.

        Returns
        -------
        torch.Tensor
            Shape ``(n, output_dim)``.
        """
        return self.features(x)


class MLP(nn.Module):
    """A multilayer perceptron for feature vectors.

    Parameters
    ----------
    in_features : int
        Size of the input vectors.
    hidden : int, default=256
        Width of the two hidden layers (each Linear, BatchNorm, ReLU).

    Attributes
    ----------
    output_dim : int
        Size of the representation, ``hidden``.
    """

    def __init__(self, in_features: int, hidden: int = 256):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
        )
        self.output_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Representation of a batch of vectors.

        Parameters
        ----------
        x : torch.Tensor
            Vectors ``(n, d)``, standardised.

        Returns
        -------
        torch.Tensor
            Shape ``(n, output_dim)``.
        """
        return self.layers(x)


def resnet_backbone(name: str, in_channels: int) -> nn.Module:
    """A torchvision ResNet with the small-image stem of the paper, untrained.

    The 7x7 stride-2 stem becomes a 3x3 stride-1 convolution, the max-pool is
    removed and the classifier is dropped, so the output is the pooled
    representation.

    Parameters
    ----------
    name : {"resnet18", "resnet34", "resnet50"}
        Which ResNet.
    in_channels : int
        Channels of the input images.

    Returns
    -------
    torch.nn.Module
        With an ``output_dim`` attribute.
    """
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.output_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net


class ProjectionHead(nn.Module):
    """SimCLR's projection head: Linear, BatchNorm, ReLU, Linear.

    Parameters
    ----------
    in_features : int
        Size of the representation.
    out_features : int
        Size of the projection fed to NT-Xent.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, in_features, bias=False),
            nn.BatchNorm1d(in_features),
            nn.ReLU(inplace=True),
            nn.Linear(in_features, out_features),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Projection of the representation.

        Parameters
        ----------
        h : torch.Tensor
            Representations ``(n, representation_dim)``.

        Returns
        -------
        torch.Tensor
            Shape ``(n, projection_dim)`` (not yet normalised).
        """
        return self.layers(h)


class ClusterHead(nn.Module):
    """Contrastive Clustering's cluster projector: Linear, ReLU, Linear, then softmax over the clusters.

    Parameters
    ----------
    in_features : int
        Size of the representation.
    n_clusters : int
        Number of clusters (outputs).
    """

    def __init__(self, in_features: int, n_clusters: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, in_features),
            nn.ReLU(inplace=True),
            nn.Linear(in_features, n_clusters),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Cluster probabilities of the representation.

        Parameters
        ----------
        h : torch.Tensor
            Representations ``(n, representation_dim)``.

        Returns
        -------
        torch.Tensor
            Shape ``(n, n_clusters)``, float32; rows sum to 1.
        """
        return torch.softmax(self.layers(h).float(), dim=1)


class PrototypeHead(nn.Module):
    """An embedding MLP and one prototype per cluster (ConCURL's prototypes, SeCu's cluster centres).

    The head maps the representation to an embedding (Linear, BatchNorm,
    ReLU, Linear); a sample's cluster probabilities are the softmax of its
    cosine similarities to the prototypes over ``temperature``.

    Parameters
    ----------
    in_features : int
        Size of the representation.
    n_clusters : int
        Number of prototypes.
    embedding_dim : int, default=128
        Size of the embedding.
    temperature : float, default=0.1
        Softmax temperature of :meth:`probabilities`.
    learnable : bool, default=True
        Whether the prototypes are a parameter trained by the optimiser
        (ConCURL) or a buffer set by the method's own rule (SeCu).
    """

    def __init__(self, in_features, n_clusters, embedding_dim=128, temperature=0.1, learnable=True):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, in_features, bias=False),
            nn.BatchNorm1d(in_features),
            nn.ReLU(inplace=True),
            nn.Linear(in_features, embedding_dim),
        )
        prototypes = F.normalize(torch.randn(n_clusters, embedding_dim), dim=1)
        if learnable:
            self.prototypes = nn.Parameter(prototypes)
        else:
            self.register_buffer("prototypes", prototypes)
        self.temperature = float(temperature)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The embedding of the representation (not normalised).

        Parameters
        ----------
        h : torch.Tensor
            Representations ``(n, representation_dim)``.

        Returns
        -------
        torch.Tensor
            Shape ``(n, embedding_dim)``, float32.
        """
        return self.layers(h).float()

    def probabilities(self, embedding: torch.Tensor) -> torch.Tensor:
        """Cluster probabilities of embeddings: ``softmax(cos(z, prototypes) / temperature)``.

        Parameters
        ----------
        embedding : torch.Tensor
            Shape ``(n, embedding_dim)`` (the head's output).

        Returns
        -------
        torch.Tensor
            Shape ``(n, n_clusters)``, float32; rows sum to 1.
        """
        z = F.normalize(embedding.float(), dim=1)
        c = F.normalize(self.prototypes.float(), dim=1)
        return torch.softmax(z @ c.T / self.temperature, dim=1)


class NetworkOutput(NamedTuple):
    """Outputs of a :class:`ContrastiveNetwork` for one batch.

    Parameters
    ----------
    representation : torch.Tensor
        Backbone output ``h``.
    projection : torch.Tensor or None
        Projection head output ``z`` (None when not asked for).
    head : torch.Tensor
        The clustering head's output: for :class:`CoHiClustNetwork` the
        probability of going left at every internal node, for
        :class:`FlatClusteringNetwork` whatever its cluster head gives
        (cluster probabilities for :class:`ClusterHead`).
    """

    representation: torch.Tensor
    projection: torch.Tensor | None
    head: torch.Tensor


def normalized_representation(h: torch.Tensor) -> torch.Tensor:
    """The representation L2-normalised and scaled by ``sqrt(dim)`` (entries of unit scale), in float32.

    The features the tree head routes on, the k-means tree start clusters
    and the neighbour positives are mined from.

    Parameters
    ----------
    h : torch.Tensor
        Shape ``(n, dim)``.

    Returns
    -------
    torch.Tensor
    """
    return F.normalize(h.float(), dim=1) * h.shape[1] ** 0.5


class TreeHead(nn.Module):
    """The soft binary tree's routing layer: Linear on the normalised representation, then sigmoid.

    The representation is L2-normalised (and scaled by ``sqrt(dim)`` so that
    its entries have unit scale) before the linear layer: routing then
    depends on directions, as cosine similarity does in the contrastive
    loss, and the bisecting initialisation of :mod:`skcohiclust.tree_init`
    works on the same features.

    Parameters
    ----------
    in_features : int
        Size of the representation.
    depth : int
        Depth of the tree; the head has ``2**depth - 1`` outputs.
    """

    def __init__(self, in_features: int, depth: int):
        super().__init__()
        self.linear = nn.Linear(in_features, n_internal_nodes(depth))

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """The features the routing hyperplanes act on (:func:`normalized_representation`).

        Parameters
        ----------
        h : torch.Tensor
            Representations ``(n, representation_dim)``.

        Returns
        -------
        torch.Tensor
            Shape ``(n, representation_dim)``, float32, each row of norm ``sqrt(representation_dim)``.
        """
        return normalized_representation(h)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Probability of going left at every internal node (heap order).

        Parameters
        ----------
        h : torch.Tensor
            Representations ``(n, representation_dim)``.

        Returns
        -------
        torch.Tensor
            Shape ``(n, 2**depth - 1)``, float32.
        """
        return torch.sigmoid(self.linear(self.features(h)).float())


class ContrastiveNetwork(nn.Module):
    """Backbone and projection head with the input scaling; subclasses add a clustering head.

    Everything the fitted model needs at prediction time lives in the
    module (as parameters or buffers), so it saves and loads as one piece.

    Parameters
    ----------
    backbone : torch.nn.Module
        Maps a batch of inputs to ``(n, representation_dim)``.
    representation_dim : int
        Output size of the backbone.
    projection_dim : int
        Output size of the projection head.
    input_mean, input_std : torch.Tensor
        Per channel (images, shape ``(C, 1, 1)``) or per feature (vectors)
        statistics; inputs are standardised with them first.
    input_size : tuple of int or None
        For images, the spatial size the backbone sees; smaller or larger
        inputs are resized bilinearly.
    channels_last : bool, default=False
        Feed images to the backbone in channels-last memory order (the
        built-in convolutional backbones, whose weights are stored that way
        too: oneDNN and cuDNN run such convolutions faster).
    """

    def __init__(
        self, backbone, representation_dim, projection_dim, input_mean, input_std, input_size=None, channels_last=False
    ):
        super().__init__()
        self.backbone = backbone
        self.channels_last = bool(channels_last)
        self.projection_head = ProjectionHead(representation_dim, projection_dim)
        self.input_size = tuple(input_size) if input_size is not None else None
        self.register_buffer("input_mean", input_mean.float())
        self.register_buffer("input_std", input_std.float())

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize (images) and standardise a batch of raw inputs.

        Parameters
        ----------
        x : torch.Tensor
            Raw inputs, ``(n, C, H, W)`` or ``(n, d)``.

        Returns
        -------
        torch.Tensor
            The backbone's input.
        """
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return (x - self.input_mean) / self.input_std

    def head_output(self, h: torch.Tensor) -> torch.Tensor:
        """The clustering head's output for the representation ``h`` (defined by each subclass).

        Parameters
        ----------
        h : torch.Tensor
            Backbone output ``(n, representation_dim)``.

        Returns
        -------
        torch.Tensor
            :attr:`NetworkOutput.head` of the batch.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor, with_projection: bool = True) -> NetworkOutput:
        """Run the network on a batch of raw (unstandardised) inputs.

        Parameters
        ----------
        x : torch.Tensor
            Images ``(n, C, H, W)`` in their original scale (``[0, 1]`` for
            8-bit images) or vectors ``(n, d)``.
        with_projection : bool, default=True
            Whether to compute the projection head too.

        Returns
        -------
        NetworkOutput
        """
        x = self.prepare(x)
        if getattr(self, "channels_last", False) and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.backbone(x)
        z = self.projection_head(h) if with_projection else None
        return NetworkOutput(h, z, self.head_output(h))


class CoHiClustNetwork(ContrastiveNetwork):
    """Backbone, projection head and tree head, with the input scaling and the leaf mask.

    Parameters
    ----------
    backbone : torch.nn.Module
        Maps a batch of inputs to ``(n, representation_dim)``.
    representation_dim : int
        Output size of the backbone.
    depth : int
        Depth of the tree.
    projection_dim : int
        Output size of the projection head.
    input_mean, input_std : torch.Tensor
        Input standardisation (see :class:`ContrastiveNetwork`).
    input_size : tuple of int or None
        For images, the spatial size the backbone sees.
    channels_last : bool, default=False
        Channels-last images for the backbone (see :class:`ContrastiveNetwork`).
    """

    def __init__(
        self,
        backbone,
        representation_dim,
        depth,
        projection_dim,
        input_mean,
        input_std,
        input_size=None,
        channels_last=False,
    ):
        super().__init__(backbone, representation_dim, projection_dim, input_mean, input_std, input_size, channels_last)
        self.tree_head = TreeHead(representation_dim, depth)
        self.depth = depth
        self.register_buffer("leaf_mask", torch.ones(2**depth, dtype=torch.bool))

    def head_output(self, h: torch.Tensor) -> torch.Tensor:
        """Probability of going left at every internal node (heap order).

        Parameters
        ----------
        h : torch.Tensor
            Backbone output ``(n, representation_dim)``.

        Returns
        -------
        torch.Tensor
            Shape ``(n, 2**depth - 1)``, float32 (the :class:`TreeHead`'s output).
        """
        return self.tree_head(h)


class FlatClusteringNetwork(ContrastiveNetwork):
    """Backbone, projection head and a flat cluster head, with the input scaling.

    Parameters
    ----------
    backbone : torch.nn.Module
        Maps a batch of inputs to ``(n, representation_dim)``.
    representation_dim : int
        Output size of the backbone.
    projection_dim : int
        Output size of the projection head.
    cluster_head : callable
        ``cluster_head(representation_dim)`` builds the head (e.g.
        :class:`ClusterHead`); it is called after the projection head is
        built, so the initialisation follows one fixed order.
    input_mean, input_std : torch.Tensor
        Input standardisation (see :class:`ContrastiveNetwork`).
    input_size : tuple of int or None
        For images, the spatial size the backbone sees.
    channels_last : bool, default=False
        Channels-last images for the backbone (see :class:`ContrastiveNetwork`).
    """

    def __init__(
        self,
        backbone,
        representation_dim,
        projection_dim,
        cluster_head,
        input_mean,
        input_std,
        input_size=None,
        channels_last=False,
    ):
        super().__init__(backbone, representation_dim, projection_dim, input_mean, input_std, input_size, channels_last)
        self.cluster_head = cluster_head(representation_dim)

    def head_output(self, h: torch.Tensor) -> torch.Tensor:
        """The cluster head's output.

        Parameters
        ----------
        h : torch.Tensor
            Backbone output ``(n, representation_dim)``.

        Returns
        -------
        torch.Tensor
            Whatever the cluster head gives (for :class:`ClusterHead`, cluster
            probabilities ``(n, n_clusters)``).
        """
        return self.cluster_head(h)


def _representation_dim(backbone: nn.Module, example: torch.Tensor) -> int:
    """The representation size of ``backbone``, checked on ``example`` (a batch of zeros)."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(example)
    except Exception as exc:  # a user's module that does not fit the data
        raise ValueError(f"the backbone module failed on an input of shape {tuple(example.shape)}: {exc}") from exc
    finally:
        backbone.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the backbone module must return a tensor of shape (n, features); it returned a {type(out).__name__}."
        )
    n = example.shape[0]
    if out.ndim != 2 or out.shape[0] != n or out.shape[1] < 1:
        raise ValueError(
            f"the backbone module must return a tensor of shape (n, features) with n = {n} rows for {n} "
            f"inputs and at least one feature; on inputs of shape {tuple(example.shape)} it returned shape "
            f"{tuple(out.shape)}."
        )
    declared = getattr(backbone, "output_dim", None)
    if declared is not None and declared != out.shape[1]:
        raise ValueError(f"the backbone module declares output_dim={declared!r}, but returns {out.shape[1]} features.")
    return int(out.shape[1])


#: The sides the default CNN brings its input images into (see :func:`default_image_size`).
MIN_CNN_SIDE, MAX_CNN_SIDE = 16, 24


def default_image_size(height: int, width: int) -> tuple[int, int]:
    """Spatial size the default CNN works at: each side brought into ``[16, 24]``.

    Smaller images are upsampled to 16 (8x8 digits have too few pixels for
    two poolings); larger ones are resized down to 24, because on a CPU the
    network's cost grows with the square of the side (a training step at
    24x24 takes about half the time of one at 32x32) and, in a fixed time,
    the nearly doubled epochs at 24x24 learned a better representation of
    32x32 colour photographs than full resolution did (benchmarks/BENCHMARKS.md,
    "CIFAR-10: where it stands").  ``backbone_params={"input_size": s}`` sets
    another side.

    Parameters
    ----------
    height, width : int
        Size of the input images.

    Returns
    -------
    tuple of int
    """
    return (min(max(height, MIN_CNN_SIDE), MAX_CNN_SIDE), min(max(width, MIN_CNN_SIDE), MAX_CNN_SIDE))


#: What ``backbone_params`` may set, per built-in backbone.
BACKBONE_PARAMS = {
    "cnn": ("width", "input_size", "stages"),
    "mlp": ("hidden",),
    "resnet18": (),
    "resnet34": (),
    "resnet50": (),
}


class Backbone(NamedTuple):
    """A built backbone and what the network around it needs to know.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a batch of prepared inputs to ``(n, dim)``.
    name : str
        The resolved backbone name (``"custom"`` for a module).
    dim : int
        Size of the representation.
    input_size : tuple of int or None
        For the built-in CNN, the spatial size it works at.
    channels_last : bool
        Whether the module runs channels-last (the built-in convolutional backbones).
    """

    module: nn.Module
    name: str
    dim: int
    input_size: tuple | None
    channels_last: bool


def build_backbone(backbone, input_shape, cnn_width=24, mlp_hidden=256, params=None) -> Backbone:
    """Build a backbone from its specification.

    Parameters
    ----------
    backbone : str or torch.nn.Module
        One of :data:`BACKBONES` or a module mapping inputs to ``(n, dim)``.
        ``"auto"`` is ``"cnn"`` for images and ``"mlp"`` for vectors.  A
        module is used as it is (it is not copied).
    input_shape : tuple of int
        ``(C, H, W)`` for images, ``(d,)`` for vectors.
    cnn_width, mlp_hidden : int
        Channels of the default CNN's first stage (24 was measured against 32 in
        benchmarks/BENCHMARKS.md, "CNN width") and width of the MLP's hidden layers.
    params : dict or None, default=None
        Overrides for the built-in backbone (the estimator's ``backbone_params``):
        ``{"width": w, "input_size": s, "stages": k}`` for ``"cnn"`` (``s``:
        the side of the square it works at, at least ``2**(k - 1)``; default
        :func:`default_image_size`; ``k``: 2 to 5, default 3),
        ``{"hidden": h}`` for ``"mlp"``; see
        :data:`BACKBONE_PARAMS`.  Must be empty for a module.

    Returns
    -------
    Backbone
    """
    is_image = len(input_shape) == 3
    input_size = None
    params = dict(params or {})
    if isinstance(backbone, nn.Module):
        if params:
            raise ValueError(f"backbone_params={params!r} is for the built-in backbones; a module is used as it is.")
        module, name = backbone, "custom"
    else:
        name = backbone
        if name == "auto":
            name = "cnn" if is_image else "mlp"
        unknown = sorted(set(params) - set(BACKBONE_PARAMS.get(name, ())))
        if unknown:
            raise ValueError(
                f"backbone_params has keys {unknown} that backbone={name!r} does not take; it takes "
                f"{list(BACKBONE_PARAMS.get(name, ())) or 'none'}."
            )
        for key, value in params.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 4096:
                raise ValueError(f"backbone_params[{key!r}] must be an int in [1, 4096], got {value!r}.")
        cnn_stages = params.get("stages", 3)
        if not 2 <= cnn_stages <= 5:
            raise ValueError(f"backbone_params['stages'] must be in [2, 5], got {cnn_stages!r}.")
        min_side = 2 ** (cnn_stages - 1)  # each 2x2 pooling halves the side
        if params.get("input_size", min_side) < min_side:
            raise ValueError(
                f"backbone_params['input_size'] must be at least {min_side}, got {params['input_size']!r} "
                f"(the CNN's {cnn_stages} stages halve the side {cnn_stages - 1} times)."
            )
        cnn_width = params.get("width", cnn_width)
        mlp_hidden = params.get("hidden", mlp_hidden)
        if name in CONV_BACKBONES and not is_image:
            raise ValueError(
                f"backbone={backbone!r} needs images, but the input is vectors of shape {tuple(input_shape)}; "
                "pass image_shape=(C, H, W) to reshape flat vectors, or use backbone='mlp'."
            )
        if name == "cnn":
            module = SmallCNN(input_shape[0], width=cnn_width, stages=cnn_stages)
            side = params.get("input_size")
            input_size = default_image_size(*input_shape[1:]) if side is None else (side, side)
        elif name == "mlp":
            in_features = 1
            for s in input_shape:
                in_features *= s
            module = (
                nn.Sequential(nn.Flatten(), MLP(in_features, hidden=mlp_hidden))
                if is_image
                else MLP(in_features, hidden=mlp_hidden)
            )
            module.output_dim = mlp_hidden
        else:
            module = resnet_backbone(name, input_shape[0])
    example = torch.zeros((2, *input_shape)) if input_size is None else torch.zeros((2, input_shape[0], *input_size))
    dim = _representation_dim(module, example)
    channels_last = name in CONV_BACKBONES
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return Backbone(module, name, dim, input_size, channels_last)


def build_network(
    backbone, input_shape, depth, projection_dim, input_mean, input_std, cnn_width=24, mlp_hidden=256, params=None
):
    """Build a :class:`CoHiClustNetwork` from a backbone specification.

    Parameters
    ----------
    backbone : str or torch.nn.Module
        See :func:`build_backbone`.
    input_shape : tuple of int
        ``(C, H, W)`` for images, ``(d,)`` for vectors.
    depth, projection_dim : int
        See :class:`CoHiClustNetwork`.
    input_mean, input_std : torch.Tensor
        Input standardisation.
    cnn_width, mlp_hidden, params
        See :func:`build_backbone`.

    Returns
    -------
    network : CoHiClustNetwork
    name : str
        The resolved backbone name (``"custom"`` for a module).
    """
    built = build_backbone(backbone, input_shape, cnn_width, mlp_hidden, params)
    network = CoHiClustNetwork(
        built.module, built.dim, depth, projection_dim, input_mean, input_std, built.input_size, built.channels_last
    )
    return network, built.name
