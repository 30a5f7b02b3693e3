"""Fingerprints of short fixed-seed CoHiClust fits, to check that a refactoring changes no result.

Usage::

    python benchmarks/fingerprint.py --out before.json      # on the old code
    python benchmarks/fingerprint.py --compare before.json  # on the new code: exit 1 on any difference

Every case fits on digits (:func:`skcohiclust.datasets.load_digits_images`)
with a fixed ``random_state`` and records, as SHA-256 digests of the exact
bytes: ``labels_``, ``predict_proba`` and ``transform`` of the training data,
``tree_``, the network's ``state_dict`` (one digest per tensor), the training
state kept for ``warm_start`` (optimiser moments, generator states, pruning
mask, neighbours), and the ``history_`` losses as exact floats (``seconds``
left out).  The cases cover the tree phase with each start (k-means, bisect
with pruning during training, random), neighbour positives on and off,
``leaf_balance``, the cosine schedule, bfloat16 and float32, images and
vectors, ``warm_start``, ``partial_fit``, pickling, and a run interrupted by
Ctrl-C and resumed from its checkpoint (the checkpoint file's contents too).
Exact equality holds only on one machine with one thread count: compare
runs made on the same machine (``--threads`` fixes the count, 2 by default).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import tempfile
import warnings

import numpy as np
import torch

from skcohiclust import CoHiClust
from skcohiclust.datasets import load_digits_images

#: name -> (CoHiClust parameters, how the data is given, what else the case does)
CASES = {
    "kmeans-neighbours-bf16": (dict(depth=3, n_clusters=6, max_epochs=4, warmup_epochs=2), "images", "fit"),
    "kmeans-float32-cosine": (
        dict(depth=3, n_clusters=6, max_epochs=4, warmup_epochs=2, mixed_precision=False, lr_schedule="cosine"),
        "images",
        "fit",
    ),
    "bisect-pruning": (
        dict(depth=3, n_clusters=5, max_epochs=6, warmup_epochs=2, tree_init="bisect", n_neighbors=0),
        "images",
        "fit",
    ),
    "random-start-prune-start": (
        dict(
            depth=3,
            n_clusters=4,
            max_epochs=6,
            warmup_epochs=1,
            tree_init="random",
            prune_start=3,
            leaf_balance=0.0,
            n_neighbors=5,
        ),
        "images",
        "fit",
    ),
    "vectors-mlp-unpruned": (dict(depth=2, max_epochs=4, warmup_epochs=1, backbone="mlp"), "vectors", "fit"),
    "warm-start": (dict(depth=3, n_clusters=6, max_epochs=2, warmup_epochs=1), "images", "warm_start"),
    "partial-fit": (dict(depth=2, n_clusters=3, max_epochs=3, backbone="mlp"), "images", "partial_fit"),
    "checkpoint-resume": (dict(depth=3, n_clusters=5, max_epochs=4, warmup_epochs=2), "images", "resume"),
}
N_ROWS = 600


def digest(value) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.view(torch.int16)
        value = value.numpy()
    array = np.ascontiguousarray(value)
    return hashlib.sha256(repr((array.dtype.str, array.shape)).encode() + array.tobytes()).hexdigest()[:20]


def digest_tree(value):
    """Digests of every tensor or array inside nested dicts/lists; plain values as they are."""
    if isinstance(value, dict):
        return {str(k): digest_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [digest_tree(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return digest(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


def model_fingerprint(model, X) -> dict:
    history = [{k: v for k, v in entry.items() if k != "seconds"} for entry in model.history_]
    return {
        "labels": digest(model.labels_),
        "n_clusters": int(model.n_clusters_),
        "leaves": model.leaves_.tolist(),
        "tree": digest(model.tree_),
        "predict_proba": digest(model.predict_proba(X)),
        "transform": digest(model.transform(X)),
        "state_dict": {k: digest(v) for k, v in model.module_.state_dict().items()},
        "training_state": digest_tree(model._training_state.state),
        "history": history,
    }


def run_case(name, X_images):
    params, kind, action = CASES[name]
    X = X_images if kind == "images" else X_images.reshape(len(X_images), -1)
    params = dict(params, random_state=0, batch_size=128)
    out = {}
    if action == "fit":
        model = CoHiClust(**params).fit(X)
        out["fit"] = model_fingerprint(model, X)
        out["unpickled_predict_proba"] = digest(pickle.loads(pickle.dumps(model)).predict_proba(X))
    elif action == "warm_start":
        model = pickle.loads(pickle.dumps(CoHiClust(**params).fit(X)))
        model.set_params(warm_start=True, max_epochs=2).fit(X)
        out["warm_start"] = model_fingerprint(model, X)
    elif action == "partial_fit":
        model = CoHiClust(**params)
        for chunk in (X[:300], X[300:], X[:300]):
            model.partial_fit(chunk)
        out["partial_fit"] = model_fingerprint(model, X)
    elif action == "resume":
        with tempfile.TemporaryDirectory() as directory:

            def interrupt(history):
                if len(history) == 3:
                    raise KeyboardInterrupt

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                CoHiClust(checkpoint_dir=directory, callbacks=[interrupt], **params).fit(X)
            saved = torch.load(f"{directory}/checkpoint.pt", weights_only=True)
            saved = {k: v for k, v in saved.items() if k not in ("history",)}
            out["interrupted_checkpoint"] = digest_tree(saved)
            model = CoHiClust(checkpoint_dir=directory, **params).fit(X)
            out["resumed"] = model_fingerprint(model, X)
            final = torch.load(f"{directory}/checkpoint.pt", weights_only=True)
            out["final_checkpoint"] = digest_tree({k: v for k, v in final.items() if k != "history"})
    return out


def differences(old, new, path=""):
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new:
                found.append(f"{path}/{key}: only in {'new' if key in new else 'old'}")
            else:
                found += differences(old[key], new[key], f"{path}/{key}")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} != {new!r}"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the fingerprints to this JSON file")
    parser.add_argument("--compare", help="compare with the fingerprints in this JSON file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    X, _ = load_digits_images()
    X = X[:N_ROWS]
    result = {}
    for name in args.cases:
        result[name] = run_case(name, X)
        print(f"{name}: done", flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1, sort_keys=True)
    if args.compare:
        with open(args.compare) as handle:
            reference = json.load(handle)
        reference = {k: v for k, v in reference.items() if k in result}
        found = differences(reference, json.loads(json.dumps(result)))
        for line in found:
            print("DIFFERENT", line)
        print(f"{len(result)} cases compared: {'identical' if not found else f'{len(found)} differences'}")
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
