"""Levels, AgglomerativeClustering-style arrays, tree similarity and export of a fitted tree."""

import copy
import json
import re

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import dendrogram, fcluster
from sklearn.cluster import SpectralClustering

from skcohiclust import CoHiClust, hierarchy
from skcohiclust import tree as tree_math

from .conftest import FAST


@pytest.fixture(scope="module")
def fitted(small_digits):
    images, _ = small_digits
    # four warm-up epochs: after one, the tree's start can leave nearly all samples in one leaf
    model = CoHiClust(depth=3, **dict(FAST, max_epochs=8)).fit(images)
    assert model.n_clusters_ >= 3, "the checks below need a tree with some structure"
    return model, images


@pytest.fixture(scope="module")
def pruned(fitted):
    model, images = fitted
    model = copy.deepcopy(model).prune(3)
    return model, images


@pytest.fixture(params=["fitted", "pruned"])
def model_and_data(request):
    return request.getfixturevalue(request.param)


def _same_partition(a, b):
    """Whether two labelings are identical up to a one-to-one relabelling."""
    pairs = np.unique(np.stack([a, b]), axis=1).shape[1]
    return pairs == len(np.unique(a)) == len(np.unique(b))


# ---------------------------------------------------------------- pure functions on a known tree

# depth 3, active leaves at positions 0, 1, 5, 6, 7:  root -> (node 0 of level 1: leaves 0, 1),
# (node 1 of level 1: leaf 5 alone below node 2 of level 2, leaves 6, 7 below node 3 of level 2)
KNOWN_LEAVES = np.array([0, 1, 5, 6, 7])


def test_leaf_to_level_on_a_known_tree():
    assert hierarchy.leaf_to_level(KNOWN_LEAVES, 3, 0).tolist() == [0, 0, 0, 0, 0]
    assert hierarchy.leaf_to_level(KNOWN_LEAVES, 3, 1).tolist() == [0, 0, 1, 1, 1]
    assert hierarchy.leaf_to_level(KNOWN_LEAVES, 3, 2).tolist() == [0, 0, 1, 2, 2]
    assert hierarchy.leaf_to_level(KNOWN_LEAVES, 3, 3).tolist() == [0, 1, 2, 3, 4]
    assert hierarchy.level_nodes(KNOWN_LEAVES, 3, 2).tolist() == [0, 2, 3]


def test_known_tree_levels_match_fcluster():
    mask = np.zeros(8, dtype=bool)
    mask[KNOWN_LEAVES] = True
    linkage = tree_math.linkage_from_leaf_mask(mask, 3)
    for level in range(4):
        cut = fcluster(linkage, tree_math.level_cut_height(3, level), criterion="distance")
        assert _same_partition(cut, hierarchy.leaf_to_level(KNOWN_LEAVES, 3, level))


def test_known_tree_newick_is_exact():
    mask = np.zeros(8, dtype=bool)
    mask[KNOWN_LEAVES] = True
    linkage = tree_math.linkage_from_leaf_mask(mask, 3)
    newick = hierarchy.linkage_to_newick(linkage, [f"c{k}" for k in range(5)])
    assert newick == "((c0:1,c1:1):2,(c2:2.25,(c3:1.375,c4:1.375):0.875):0.75);"
    assert hierarchy.linkage_to_newick(np.empty((0, 4)), ["only"]) == "only;"
    quoted = hierarchy.linkage_to_newick(linkage, ["T-shirt top", "it's", "a", "b", "c"])
    assert quoted.startswith("(('T-shirt top':1,'it''s':1):2,")


def test_ordered_linkage_draws_leaves_left_to_right():
    mask = np.zeros(8, dtype=bool)
    mask[KNOWN_LEAVES] = True
    linkage = tree_math.linkage_from_leaf_mask(mask, 3, node_mass=np.linspace(1, 0, 14))
    ordered = hierarchy.ordered_linkage(linkage)
    np.testing.assert_array_equal(ordered[:, 2:], linkage[:, 2:])
    np.testing.assert_array_equal(np.sort(ordered[:, :2], axis=1), np.sort(linkage[:, :2], axis=1))
    assert dendrogram(ordered, no_plot=True)["leaves"] == [0, 1, 2, 3, 4]


def test_level_probabilities_equal_node_probabilities_without_masking():
    depth = 3
    generator = torch.Generator().manual_seed(0)
    left = torch.rand(20, 2**depth - 1, generator=generator, dtype=torch.float64)
    nodes = tree_math.node_probabilities(left, depth).numpy()
    leaf = nodes[:, tree_math.level_slice(depth)]
    for level in range(1, depth + 1):
        got = hierarchy.level_probabilities(leaf, np.arange(2**depth), depth, level)
        np.testing.assert_allclose(got, nodes[:, tree_math.level_slice(level)], atol=1e-12)
    np.testing.assert_allclose(hierarchy.level_probabilities(leaf, np.arange(8), depth, 0), 1.0)


def test_bhattacharyya_similarity_brute_force():
    rng = np.random.default_rng(0)
    proba_x, proba_y = rng.dirichlet(np.ones(5), size=6), rng.dirichlet(np.ones(5), size=4)
    depth = 3
    expected = np.zeros((6, 4))
    for i in range(6):
        for j in range(4):
            for level in range(1, depth + 1):
                groups = KNOWN_LEAVES >> (depth - level)
                for g in np.unique(groups):
                    expected[i, j] += np.sqrt(proba_x[i, groups == g].sum() * proba_y[j, groups == g].sum())
    expected /= depth
    got = hierarchy.bhattacharyya_similarity(proba_x, proba_y, KNOWN_LEAVES, depth)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_lca_similarity_brute_force():
    depth, labels = 3, np.arange(5)
    got = hierarchy.lca_similarity(labels, labels, KNOWN_LEAVES, depth)
    paths = [format(p, "03b") for p in KNOWN_LEAVES]  # the left/right turns from the root
    for i in labels:
        for j in labels:
            common = next((b for b in range(depth) if paths[i][b] != paths[j][b]), depth)
            assert got[i, j] == common / depth


@pytest.mark.parametrize("level", [-1, 4, 1.0, True, "1"])
def test_bad_level_is_rejected(level):
    with pytest.raises(ValueError, match=r"level must be an int in \[0, 3\]"):
        hierarchy.leaf_to_level(KNOWN_LEAVES, 3, level)


# ---------------------------------------------------------------- the fitted model (and its pruned copy)


def test_levels_nest_and_are_numbered_left_to_right(model_and_data):
    model, _ = model_and_data
    assert np.all(model.labels_at_level(0) == 0)
    np.testing.assert_array_equal(model.labels_at_level(model.depth), model.labels_)
    for level in range(model.depth + 1):
        labels = model.labels_at_level(level)
        positions = hierarchy.level_nodes(model.leaves_, model.depth, level)
        assert np.unique(labels).tolist() == list(range(len(positions)))  # contiguous, no empty cluster
        # label order is left-to-right order of the nodes: ancestors of the leaves, in order
        np.testing.assert_array_equal(positions[labels], model.leaves_[model.labels_] >> (model.depth - level))
    for level in range(model.depth):
        coarse, fine = model.labels_at_level(level), model.labels_at_level(level + 1)
        # every finer cluster lies inside exactly one coarser cluster
        assert np.unique(np.stack([coarse, fine]), axis=1).shape[1] == len(np.unique(fine))


def test_levels_equal_fcluster_cuts(model_and_data):
    model, _ = model_and_data
    for level in range(model.depth + 1):
        cut = fcluster(model.tree_, tree_math.level_cut_height(model.depth, level), criterion="distance")
        assert _same_partition(cut[model.labels_], model.labels_at_level(level))


def test_predict_at_a_level(model_and_data):
    model, images = model_and_data
    proba = model.predict_proba(images)
    for level in range(model.depth + 1):
        np.testing.assert_array_equal(model.predict(images, level=level), model.labels_at_level(level))
        level_proba = model.predict_proba(images, level=level)
        mapping = hierarchy.leaf_to_level(model.leaves_, model.depth, level)
        brute = np.stack([proba[:, mapping == c].sum(axis=1) for c in range(mapping.max() + 1)], axis=1)
        np.testing.assert_allclose(level_proba, brute, rtol=1e-6)
        np.testing.assert_allclose(level_proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(images, level=None), model.predict(images))
    with pytest.raises(ValueError, match="level must be an int"):
        model.predict(images[:3], level=model.depth + 1)


def test_agglomerative_attributes_follow_tree(model_and_data):
    model, images = model_and_data
    assert model.n_leaves_ == model.n_clusters_ == len(model.leaves_)
    assert model.children_.shape == (model.n_clusters_ - 1, 2)
    assert model.children_.dtype.kind == "i"
    np.testing.assert_array_equal(model.children_, model.tree_[:, :2])
    np.testing.assert_array_equal(model.distances_, model.tree_[:, 2])
    assert np.all(np.diff(model.distances_) >= 0)
    np.testing.assert_array_equal(model.leaf_sizes_, np.bincount(model.labels_, minlength=model.n_clusters_))
    assert model.leaf_sizes_.sum() == len(images) and model.leaf_sizes_.min() > 0


def test_attributes_follow_prune(fitted):
    model, _ = fitted
    model = copy.deepcopy(model)
    before = model.n_leaves_
    model.prune(2)
    assert before > 2 and model.n_leaves_ == model.n_clusters_ == 2
    assert model.children_.tolist() == [[0, 1]]
    assert len(model.distances_) == 1 and len(model.leaf_sizes_) == 2


def test_unfitted_model_has_no_tree_attributes():
    model = CoHiClust()
    for name in ("children_", "distances_", "n_leaves_", "leaf_sizes_"):
        assert not hasattr(model, name)


def test_similarity_properties(model_and_data):
    model, images = model_and_data
    x = images[:60]
    similarity = model.similarity(x)
    assert similarity.shape == (60, 60) and similarity.dtype == np.float64
    np.testing.assert_array_equal(similarity, similarity.T)
    assert similarity.min() >= 0.0 and similarity.max() <= 1.0
    np.testing.assert_allclose(np.diag(similarity), 1.0, atol=1e-12)
    np.testing.assert_allclose(model.similarity(x, x), similarity, atol=1e-12)
    cross = model.similarity(x[:10], images[100:125])
    assert cross.shape == (10, 25)
    np.testing.assert_allclose(cross, similarity_brute_force(model, x[:10], images[100:125]), atol=1e-6)


def similarity_brute_force(model, x, y):
    proba_x, proba_y = model.predict_proba(x).astype(np.float64), model.predict_proba(y).astype(np.float64)
    total = np.zeros((len(x), len(y)))
    for level in range(1, model.depth + 1):
        groups = model.leaves_ >> (model.depth - level)
        for g in np.unique(groups):
            total += np.sqrt(np.outer(proba_x[:, groups == g].sum(1), proba_y[:, groups == g].sum(1)))
    return total / model.depth


def test_lca_similarity_of_the_model(model_and_data):
    model, images = model_and_data
    x = images[:50]
    lca = model.similarity(x, kind="lca")
    labels = model.predict(x)
    np.testing.assert_array_equal(lca, lca.T)
    np.testing.assert_array_equal(np.diag(lca), 1.0)
    np.testing.assert_array_equal(lca == 1.0, labels[:, None] == labels[None, :])
    # the LCA is at level l exactly when the samples share their level-l cluster and not the next
    depth_of_lca = np.rint(lca * model.depth).astype(int)
    for level in range(model.depth + 1):
        at = model.predict(x, level=level)
        np.testing.assert_array_equal(depth_of_lca >= level, at[:, None] == at[None, :])
    with pytest.raises(ValueError, match="kind must be one of"):
        model.similarity(x, kind="cosine")


def test_similarity_as_precomputed_affinity(fitted):
    model, images = fitted
    affinity = model.similarity(images[:120])
    labels = SpectralClustering(n_clusters=3, affinity="precomputed", random_state=0).fit_predict(affinity)
    assert labels.shape == (120,) and set(labels) <= {0, 1, 2}


def parse_newick(text):
    """A tiny Newick reader: nested lists of (name, branch length) leaves; returns the root."""
    tokens = re.findall(r"'(?:[^']|'')*'|[(),:;]|[^(),:;']+", text)
    position = 0

    def node():
        nonlocal position
        if tokens[position] == "(":
            position += 1
            children = [node()]
            while tokens[position] == ",":
                position += 1
                children.append(node())
            assert tokens[position] == ")"
            position += 1
            item = {"children": children}
        else:
            name = tokens[position]
            position += 1
            item = {"name": name.strip("'").replace("''", "'") if name.startswith("'") else name}
        if position < len(tokens) and tokens[position] == ":":
            item["length"] = float(tokens[position + 1])
            position += 2
        return item

    root = node()
    assert tokens[position] == ";" and position == len(tokens) - 1
    return root


def _leaf_depths(node, above=0.0):
    here = above + node.get("length", 0.0)
    if "name" in node:
        return {node["name"]: here}
    return {name: d for child in node["children"] for name, d in _leaf_depths(child, here).items()}


def _clusters(node):
    """The leaf sets of every internal node."""
    if "name" in node:
        return [], {node["name"]}
    found, leaves = [], set()
    for child in node["children"]:
        sub, child_leaves = _clusters(child)
        found += sub
        leaves |= child_leaves
    return found + [frozenset(leaves)], leaves


def test_newick_round_trip(model_and_data):
    model, _ = model_and_data
    root = parse_newick(model.to_newick())
    depths = _leaf_depths(root)
    assert set(depths) == {f"c{k}" for k in range(model.n_clusters_)}
    # branch lengths come from the heights: every leaf lies the root's height below it
    np.testing.assert_allclose(list(depths.values()), model.tree_[-1, 2])
    # the internal nodes are exactly the merges of tree_
    k = model.n_clusters_
    members = [{f"c{c}"} for c in range(k)]
    for a, b in model.tree_[:, :2].astype(int):
        members.append(members[a] | members[b])
    assert set(_clusters(root)[0]) == {frozenset(m) for m in members[k:]}
    names = [f"cluster {c}" for c in range(k)]
    assert set(_leaf_depths(parse_newick(model.to_newick(leaf_names=names)))) == set(names)


def test_to_dict(model_and_data):
    model, images = model_and_data
    root = model.to_dict()
    json.loads(json.dumps(root))
    assert root["id"] == 0 and root["level"] == 0 and root["size"] == len(images)
    assert root["mass"] == pytest.approx(1.0)
    level_counts = [np.bincount(model.labels_at_level(level)) for level in range(model.depth + 1)]
    leaves, stack = [], [root]
    while stack:
        node = stack.pop()
        level = node["level"]
        assert node["id"] == 2**level - 1 + node["position"]
        assert node["size"] == level_counts[level][node["label"]]
        assert node["leaf"] == (level == model.depth) == (not node["children"])
        if node["children"]:
            assert [c["level"] for c in node["children"]] == [level + 1] * len(node["children"])
            assert [c["position"] >> 1 for c in node["children"]] == [node["position"]] * len(node["children"])
            assert sum(c["size"] for c in node["children"]) == node["size"]
            assert sum(c["mass"] for c in node["children"]) == pytest.approx(node["mass"])
        else:
            leaves.append(node)
        stack.extend(reversed(node["children"]))
    # depth-first, left to right: the leaf clusters in label order
    assert [leaf["label"] for leaf in leaves] == list(range(model.n_clusters_))
    assert [leaf["position"] for leaf in leaves] == model.leaves_.tolist()
    assert [leaf["size"] for leaf in leaves] == model.leaf_sizes_.tolist()
