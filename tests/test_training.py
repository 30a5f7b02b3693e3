"""Long runs: progress, history, callbacks, early stopping, Ctrl-C, warm start, partial_fit, memmaps."""

import gc
import pickle
import warnings
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from skcohiclust import Callback, CoHiClust, EarlyStopping, neighbors, training

#: Small, quick, and fewer leaves kept than the tree has (4 -> 3 when the tree phase starts).
PARAMS = dict(depth=2, n_clusters=3, batch_size=64, backbone="mlp", random_state=0)
#: No pruning and a fixed warm-up: the first k epochs of any run are the same.
PLAIN = dict(PARAMS, n_clusters=None, warmup_epochs=1)


# one torch thread (see conftest.one_torch_thread): exact comparisons need one fixed count
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def X():
    from sklearn.datasets import load_digits

    return load_digits().images[:300].astype(np.float32)


def _same_parameters(a, b, skip=("leaf_mask",)):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa if k not in skip)


def _losses(history):
    return [(e["loss"], e["instance_loss"], e["tree_loss"], e["regularizer"], e["n_leaves"]) for e in history]


# ---------------------------------------------------------------- progress and history
def test_verbose_zero_prints_nothing(X, capfd):
    CoHiClust(max_epochs=2, verbose=0, **PARAMS).fit(X)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_verbose_one_shows_a_bar_per_epoch_with_losses_and_leaves(X, capfd):
    CoHiClust(max_epochs=2, verbose=1, **PLAIN).fit(X)
    out, err = capfd.readouterr()
    assert out == ""
    for text in ("epoch 1/2", "epoch 2/2", "loss=", "instance=", "tree=", "reg=", "leaves=4"):
        assert text in err, text


def test_history_has_one_entry_per_epoch_with_the_loss_terms(X):
    model = CoHiClust(max_epochs=6, warmup_epochs=2, **PARAMS).fit(X)
    history = model.history_
    assert [e["epoch"] for e in history] == [1, 2, 3, 4, 5, 6]
    keys = {"epoch", "phase", "loss", "instance_loss", "tree_loss", "regularizer", "n_leaves", "seconds"}
    assert all(set(e) == keys for e in history)
    assert [e["phase"] for e in history] == ["warmup"] * 2 + ["tree"] * 4
    for e in history:
        assert all(isinstance(e[k], float) and np.isfinite(e[k]) for k in keys - {"epoch", "phase", "n_leaves"})
        assert e["seconds"] > 0
        # the total is the sum of its terms (each a mean over the same batches)
        assert e["loss"] == pytest.approx(e["instance_loss"] + e["tree_loss"] + e["regularizer"], rel=1e-5, abs=1e-6)
    assert all(e["tree_loss"] == 0 and e["regularizer"] == 0 for e in history[:2])
    assert all(e["tree_loss"] != 0 and e["regularizer"] != 0 for e in history[2:])
    leaves = [e["n_leaves"] for e in history]
    assert leaves[0] == 4 and leaves[-1] == 3 and leaves == sorted(leaves, reverse=True)


def test_history_is_dataframe_ready(X):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(CoHiClust(max_epochs=2, **PARAMS).fit(X).history_)
    assert frame.shape == (2, 8) and frame["n_leaves"].dtype.kind == "i"


# ---------------------------------------------------------------- callbacks
class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, history, network):
        self.calls.append(("begin", len(history)))

    def on_epoch_end(self, history, network):
        assert isinstance(network, nn.Module) and network.training
        self.calls.append(("epoch", len(history)))
        history[-1]["weight_norm"] = float(sum(p.detach().norm() ** 2 for p in network.parameters()))

    def on_train_end(self, history, network):
        self.calls.append(("end", len(history)))


def test_callbacks_see_every_epoch_and_may_record_values(X):
    recorder, seen = Recorder(), []
    model = CoHiClust(max_epochs=3, callbacks=[recorder, lambda h: seen.append(h[-1]["epoch"])], **PARAMS).fit(X)
    assert recorder.calls == [("begin", 0), ("epoch", 1), ("epoch", 2), ("epoch", 3), ("end", 3)]
    assert seen == [1, 2, 3]
    assert all(e["weight_norm"] > 0 for e in model.history_)


def test_a_callback_returning_true_stops_training(X):
    others = []
    model = CoHiClust(max_epochs=10, callbacks=[lambda h: len(h) == 2, lambda h: others.append(len(h))], **PARAMS)
    model.fit(X)
    assert len(model.history_) == 2 and others == [1, 2]  # all callbacks still see the last epoch
    assert model.predict(X).shape == (len(X),)
    assert model.n_clusters_ <= 3  # stopped in the warm-up: the leaves beyond n_clusters are pruned at the end


def test_a_callback_of_the_wrong_type_is_refused(X):
    with pytest.raises(TypeError, match="on_epoch_end"):
        CoHiClust(max_epochs=2, callbacks=[42], **PARAMS).fit(X)


# ---------------------------------------------------------------- early stopping
def _history(losses, warmup=0):
    return [
        {"epoch": i + 1, "phase": "warmup" if i < warmup else "tree", "loss": loss} for i, loss in enumerate(losses)
    ]


def _first_stop(callback, history):
    for k in range(1, len(history) + 1):
        if callback.on_epoch_end(history[:k], None):
            return k
    return None


def test_early_stopping_counts_epochs_without_improvement():
    losses = [5.0, 4.0, 3.0, 3.5, 3.2, 2.9, 3.0, 3.1, 3.0]
    assert _first_stop(EarlyStopping(patience=2), _history(losses)) == 5  # 3.5, 3.2 after the best 3.0
    assert _first_stop(EarlyStopping(patience=3), _history(losses)) == 9  # 3.0, 3.1, 3.0 after 2.9
    assert _first_stop(EarlyStopping(patience=4), _history(losses)) is None
    # min_delta: 2.9 is not enough of an improvement on 3.0
    assert _first_stop(EarlyStopping(patience=3, min_delta=0.2), _history(losses)) == 6


def test_early_stopping_compares_within_a_phase_and_spares_the_warmup():
    # the warm-up's instance loss is lower than the tree phase's total loss: no stop because of that
    losses = [1.0, 1.0, 1.0, 1.0, 3.0, 2.5, 2.0, 2.1, 2.2]
    assert _first_stop(EarlyStopping(patience=2), _history(losses, warmup=4)) == 9
    assert _first_stop(EarlyStopping(patience=2, during_warmup=True), _history(losses, warmup=4)) == 3


@pytest.mark.parametrize("kwargs", [dict(patience=0), dict(patience=1.5), dict(min_delta=-1.0)])
def test_early_stopping_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        EarlyStopping(**kwargs)


def test_early_stopping_parameter_stops_when_the_loss_stalls(X):
    # a learning rate this small leaves only the noise of the random views: the loss stalls at once
    model = CoHiClust(max_epochs=30, warmup_epochs=1, lr=1e-9, early_stopping=2, **PARAMS).fit(X)
    n = len(model.history_)
    assert 1 + 2 < n < 30
    assert _first_stop(EarlyStopping(patience=2), model.history_) == n  # the first epoch the rule holds
    assert len(CoHiClust(max_epochs=5, lr=1e-9, **PARAMS).fit(X).history_) == 5  # off by default


@pytest.mark.parametrize("value", [0, -1, 2.5, "5"])
def test_early_stopping_parameter_is_validated(X, value):
    with pytest.raises(ValueError, match="early_stopping"):
        CoHiClust(early_stopping=value, **PARAMS).fit(X)


# ---------------------------------------------------------------- Ctrl-C
def test_keyboard_interrupt_in_a_callback_leaves_a_fitted_model(X):
    def interrupt(history):
        if len(history) == 2:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted.*end of epoch 2"):
        model = CoHiClust(max_epochs=5, callbacks=[interrupt], **PLAIN).fit(X)
    assert len(model.history_) == 2
    assert model.predict(X[:10]).shape == (10,) and model.labels_.shape == (len(X),)
    assert _same_parameters(model, CoHiClust(max_epochs=2, **PLAIN).fit(X))


class Flat(nn.Module):
    """A tiny backbone for 8x8 images."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.output_dim = 32

    def forward(self, x):
        return self.net(x)


class FlatInterrupted(Flat):
    """Raises KeyboardInterrupt on training forward pass number ``after + 1``: Ctrl-C mid-epoch."""

    def __init__(self, after):
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                raise KeyboardInterrupt
        return super().forward(x)


def test_keyboard_interrupt_mid_epoch_restores_the_last_completed_epoch(X):
    torch.manual_seed(0)
    plain = Flat()
    torch.manual_seed(0)
    interrupted = FlatInterrupted(after=2 * 4 + 2)  # 300 samples = 4 batches an epoch: stop in epoch 3
    with pytest.warns(RuntimeWarning, match="end of epoch 2"):
        model = CoHiClust(max_epochs=5, **dict(PLAIN, backbone=interrupted)).fit(X)
    assert len(model.history_) == 2
    reference = CoHiClust(max_epochs=2, **dict(PLAIN, backbone=plain)).fit(X)
    assert _same_parameters(model, reference)  # not the weights of the half-done third epoch


# ---------------------------------------------------------------- warm start
def test_warm_start_continues_exactly_and_survives_pickling(X):
    full = CoHiClust(max_epochs=4, **PLAIN).fit(X)
    model = CoHiClust(max_epochs=2, **PLAIN).fit(X)
    model = pickle.loads(pickle.dumps(model))
    model.set_params(warm_start=True).fit(X)
    assert [e["epoch"] for e in model.history_] == [1, 2, 3, 4]
    assert _losses(model.history_) == _losses(full.history_)
    assert _same_parameters(model, full)


def test_warm_start_from_a_state_recorded_on_another_device(X):
    # as if trained on CUDA and unpickled on a CPU-only machine: a CUDA generator state (16 bytes) cannot
    # seed a CPU generator, so the views get a fresh seed derived from the saved one; the rest carries on
    model = CoHiClust(max_epochs=2, **PLAIN).fit(X)
    model = pickle.loads(pickle.dumps(model))
    state = model._training_state.state
    state["device_type"] = "cuda"
    state["view_generator"] = torch.zeros(16, dtype=torch.uint8)
    state["global_rng"] = dict(state["global_rng"], cuda=torch.zeros(16, dtype=torch.uint8))
    model.set_params(warm_start=True).fit(X)
    assert [e["epoch"] for e in model.history_] == [1, 2, 3, 4]
    assert all(p.device.type == "cpu" for p in model.module_.parameters())


def test_fit_without_warm_start_starts_afresh(X):
    model = CoHiClust(max_epochs=2, **PLAIN).fit(X).fit(X)
    assert len(model.history_) == 2
    assert _same_parameters(model, CoHiClust(max_epochs=2, **PLAIN).fit(X))
    fresh = CoHiClust(max_epochs=2, warm_start=True, **PLAIN).fit(X)  # nothing to continue: a normal fit
    assert _same_parameters(fresh, model)


@pytest.mark.parametrize("change", [dict(depth=3), dict(projection_dim=16), dict(backbone="cnn")])
def test_warm_start_refuses_another_architecture(X, change):
    model = CoHiClust(max_epochs=1, **PARAMS).fit(X)
    with pytest.raises(ValueError, match=f"{next(iter(change))}=.*warm_start=False"):
        model.set_params(warm_start=True, **change).fit(X)


def test_warm_start_checks_the_number_of_features(X):
    model = CoHiClust(max_epochs=1, warm_start=True, **PARAMS).fit(X)
    with pytest.raises(ValueError, match="X has 4 features, but CoHiClust is expecting 8"):
        model.fit(X[:, :4, :])


def test_fitted_model_holds_no_reference_to_the_training_data(X):
    data = X.copy()
    ref = weakref.ref(data)
    model = CoHiClust(max_epochs=1, **PARAMS).fit(data)
    del data
    gc.collect()
    assert ref() is None
    assert len(pickle.dumps(model._training_state)) < 4 * sum(p.numel() * 4 for p in model.module_.parameters())


# ---------------------------------------------------------------- partial_fit
def test_partial_fit_calls_are_epochs_with_warmup_and_pruning(X):
    full = CoHiClust(max_epochs=5, **PARAMS).fit(X)
    model = CoHiClust(max_epochs=5, **PARAMS)
    for _ in range(5):
        model.partial_fit(X)
    assert [e["phase"] for e in model.history_] == [e["phase"] for e in full.history_]
    assert _losses(model.history_) == _losses(full.history_)  # same leaves pruned at the same epochs
    assert _same_parameters(model, full)


def test_partial_fit_on_chunks(X):
    chunks = np.array_split(X, 3)
    model = CoHiClust(max_epochs=3, **PARAMS)
    for k, chunk in enumerate(chunks, start=1):
        model.partial_fit(chunk)
        assert len(model.history_) == k
        assert model.labels_.shape == (len(chunk),)  # the clusters of the last chunk
        assert np.array_equal(model.labels_, model.predict(chunk))
        assert model.tree_.shape == (model.n_clusters_ - 1, 4)
        assert set(model.labels_) <= set(range(model.n_clusters_))
        # the input statistics come from the first chunk and stay
        assert model.module_.input_mean.item() == pytest.approx(chunks[0].mean(), rel=1e-5)
    assert model.predict(X).shape == (len(X),)


def test_partial_fit_continues_a_fitted_model(X):
    model = CoHiClust(max_epochs=2, **PARAMS).fit(X)
    model.partial_fit(X[:100])
    assert [e["epoch"] for e in model.history_] == [1, 2, 3]


def test_partial_fit_validates_later_chunks(X):
    model = CoHiClust(max_epochs=2, **PARAMS).partial_fit(X[:100])
    with pytest.raises(ValueError, match="X has 4 features, but CoHiClust is expecting 8"):
        model.partial_fit(X[:100, :4, :])
    with pytest.raises(ValueError, match=r"samples of shape \(8, 4\)"):
        model.partial_fit(X[:100, :, :4])  # same n_features_in_ (8 rows), other sample shape
    with pytest.raises(ValueError, match="1 sample.*minimum of 2"):
        model.partial_fit(X[:1])
    assert len(model.history_) == 1


def test_partial_fit_warns_that_it_writes_no_checkpoint(X, tmp_path):
    with pytest.warns(UserWarning, match="checkpoint_dir"):
        CoHiClust(max_epochs=2, checkpoint_dir=tmp_path, **PARAMS).partial_fit(X)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- neighbour positives
#: The tree phase starts at epoch 2; its positive pairs join each sample with one of its 5 nearest neighbours.
NEIGHBOURS = dict(PLAIN, n_neighbors=5, mixed_precision=False)


class PartnerSpy:
    """Wraps ``Trainer._partner_batch``: records the tables used and checks every partner against them."""

    def __init__(self, monkeypatch, X):
        self.X = torch.from_numpy(X)
        self.tables, self.calls = [], 0
        original = training.Trainer._partner_batch

        def spy(trainer, indices, neighbors):
            partner = original(trainer, indices, neighbors)
            if not self.tables or self.tables[-1] is not neighbors:
                self.tables.append(neighbors)
            candidates = self.X[neighbors[torch.from_numpy(indices)].long()]  # (B, k, 8, 8)
            assert (candidates == partner.reshape(len(indices), 1, *self.X.shape[1:])).flatten(2).all(2).any(1).all()
            self.calls += 1
            return partner

        monkeypatch.setattr(training.Trainer, "_partner_batch", spy)


def test_neighbour_positives_pair_each_sample_with_one_of_its_nearest_neighbours(X, monkeypatch, small_digits):
    spy = PartnerSpy(monkeypatch, X)
    model = CoHiClust(max_epochs=4, **NEIGHBOURS).fit(X)
    assert spy.calls == 3 * 4  # every batch of the three tree epochs, none in the warm-up
    assert len(spy.tables) == 1  # mined once, when the tree phase starts
    table = spy.tables[0].long()
    assert table.shape == (len(X), 5) and not (table == torch.arange(len(X))[:, None]).any()
    # neighbours in a representation trained for one epoch mostly share the digit (chance: 0.1)
    labels = torch.from_numpy(small_digits[1])
    assert (labels[table] == labels[:, None]).float().mean() > 0.7
    assert torch.equal(model._training_state.state["neighbors"], spy.tables[0])


def test_without_neighbours_the_positive_pairs_are_two_views_of_one_sample(X, monkeypatch):
    spy = PartnerSpy(monkeypatch, X)
    CoHiClust(max_epochs=3, **dict(NEIGHBOURS, n_neighbors=0)).fit(X)
    assert spy.calls == 0


def test_neighbour_positives_change_the_tree_phase_only(X):
    plain = CoHiClust(max_epochs=3, **dict(NEIGHBOURS, n_neighbors=0)).fit(X)
    with_neighbours = CoHiClust(max_epochs=3, **NEIGHBOURS).fit(X)
    assert _losses(plain.history_)[0] == _losses(with_neighbours.history_)[0]  # the same warm-up epoch
    assert _losses(plain.history_)[1:] != _losses(with_neighbours.history_)[1:]


def test_warm_start_with_neighbours_continues_exactly(X):
    full = CoHiClust(max_epochs=4, **NEIGHBOURS).fit(X)
    model = CoHiClust(max_epochs=2, **NEIGHBOURS).fit(X)  # the table is mined in epoch 2 and travels
    model = pickle.loads(pickle.dumps(model))
    model.set_params(warm_start=True).fit(X)
    assert _losses(model.history_) == _losses(full.history_)
    assert _same_parameters(model, full)


def test_partial_fit_with_neighbours_looks_them_up_in_each_chunk(X, monkeypatch):
    spy = PartnerSpy(monkeypatch, X)
    chunks = [X[:100], X[100:220], X[:100]]
    model = CoHiClust(max_epochs=4, **NEIGHBOURS).partial_fit(X)  # the warm-up epoch
    for chunk in chunks:
        spy.X = torch.from_numpy(chunk)
        model.partial_fit(chunk)
        assert model._training_state.state["neighbors"].shape == (len(chunk), 5)
    assert len(spy.tables) == 3  # each chunk is other data than the last one: mined again


@pytest.fixture
def mined(monkeypatch):
    """The epochs (counted from 0) in which the trainer mines neighbours, appended as it does."""
    epochs = []
    original = training.Trainer.mine_neighbors

    def spy(trainer, features):
        epochs.append(trainer.epoch)
        return original(trainer, features)

    monkeypatch.setattr(training.Trainer, "mine_neighbors", spy)
    return epochs


def test_neighbours_are_mined_again_every_refresh_neighbors_epochs(X, monkeypatch, mined):
    tables = PartnerSpy(monkeypatch, X)
    model = CoHiClust(max_epochs=7, **dict(NEIGHBOURS, refresh_neighbors=2)).fit(X)
    assert mined == [1, 3, 5]  # the tree phase's first epoch (1), then every second epoch
    assert len(tables.tables) == 3 and tables.calls == 6 * 4  # every pair is drawn from the table of its epoch
    assert not torch.equal(tables.tables[0], tables.tables[-1])  # mined from a representation that moved on
    assert torch.equal(model._training_state.state["neighbors"], tables.tables[-1])
    mined.clear()
    CoHiClust(max_epochs=7, **dict(NEIGHBOURS, refresh_neighbors=0)).fit(X)
    assert mined == [1]


def test_warm_start_between_neighbour_refreshes_continues_exactly(X):
    params = dict(NEIGHBOURS, refresh_neighbors=2)
    full = CoHiClust(max_epochs=6, **params).fit(X)
    model = CoHiClust(max_epochs=3, **params).fit(X)  # mined in epoch 1 (from 0); the rest mines in 3 and 5
    model = pickle.loads(pickle.dumps(model))
    model.set_params(warm_start=True).fit(X)
    assert _losses(model.history_) == _losses(full.history_)
    assert _same_parameters(model, full)


def test_auto_refresh_mines_again_after_refresh_samples_samples(X, monkeypatch, mined):
    assert CoHiClust().refresh_neighbors == "auto"
    CoHiClust(max_epochs=7, **dict(NEIGHBOURS, refresh_neighbors="auto")).fit(X)
    assert mined == [1]  # a few hundred samples: 250,000 of them would take far more epochs than 7
    mined.clear()
    monkeypatch.setattr(neighbors, "REFRESH_SAMPLES", 2 * len(X))
    CoHiClust(max_epochs=7, **dict(NEIGHBOURS, refresh_neighbors="auto")).fit(X)
    assert mined == [1, 3, 5]  # two epochs' samples between minings


@pytest.mark.parametrize(
    "n_samples, epochs", [(50_000, 5), (70_000, 4), (60_000, 4), (1_797, 139), (500_000, 1), (10**7, 1), (1, 250_000)]
)
def test_refresh_epochs_is_the_nearest_whole_number_of_epochs(n_samples, epochs):
    assert neighbors.refresh_epochs("auto", n_samples) == epochs
    assert neighbors.refresh_epochs(3, n_samples) == 3
    assert neighbors.refresh_epochs(0, n_samples) == 0


@pytest.mark.parametrize("value", [-1, 2.5, "never", None, True])
def test_refresh_neighbors_is_validated(X, value):
    expected = r"refresh_neighbors must be an int >= 0 \(0 mines the neighbours once\) or 'auto'"
    with pytest.raises(ValueError, match=expected):
        CoHiClust(max_epochs=2, **dict(NEIGHBOURS, refresh_neighbors=value)).fit(X)


def test_neighbours_are_capped_by_the_number_of_samples(X):
    model = CoHiClust(max_epochs=2, **dict(NEIGHBOURS, n_neighbors=50)).fit(X[:12])
    assert model._training_state.state["neighbors"].shape == (12, 11)


# ---------------------------------------------------------------- memory-mapped data
@pytest.fixture
def memmaps(X, tmp_path):
    images = np.round(X * (255 / 16)).astype(np.uint8)
    out = {}
    for name, data in (("uint8", images), ("float32", X)):
        mm = np.memmap(tmp_path / f"x_{name}.dat", dtype=data.dtype, mode="w+", shape=data.shape)
        mm[:] = data
        mm.flush()
        out[name] = (np.memmap(tmp_path / f"x_{name}.dat", dtype=data.dtype, mode="r", shape=data.shape), data)
    return out


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_memmap_is_validated_without_a_copy(memmaps, dtype):
    mm, _ = memmaps[dtype]
    validated = CoHiClust()._validate_X(mm, reset=True)
    assert np.shares_memory(validated, mm) and validated.dtype == mm.dtype


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_fit_on_a_memmap_equals_fit_in_memory(memmaps, dtype):
    mm, data = memmaps[dtype]
    on_disk = CoHiClust(max_epochs=2, **PARAMS).fit(mm)
    in_memory = CoHiClust(max_epochs=2, **PARAMS).fit(data)
    assert _same_parameters(on_disk, in_memory, skip=())
    assert np.array_equal(on_disk.labels_, in_memory.labels_)
    chunked = CoHiClust(max_epochs=2, **PARAMS)
    for start in range(0, len(mm), 150):
        chunked.partial_fit(mm[start : start + 150])
    assert len(chunked.history_) == 2


def test_non_finite_values_in_a_memmap_are_refused(memmaps):
    mm, data = memmaps["float32"]
    broken = np.memmap(mm.filename, dtype=np.float32, mode="r+", shape=mm.shape)
    broken[7, 3, 3] = np.nan
    broken.flush()
    with pytest.raises(ValueError, match="NaN"):
        CoHiClust(max_epochs=1, **PARAMS).fit(np.memmap(mm.filename, dtype=np.float32, mode="r", shape=mm.shape))


def test_no_warning_in_a_plain_fit(X):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CoHiClust(max_epochs=2, **PARAMS).fit(X).partial_fit(X)


# ---------------------------------------------------------------- learning-rate schedule
def test_learning_rate_factor_is_a_half_cosine_restarted_at_each_phase():
    factor = training.learning_rate_factor
    assert all(factor(e, 4, 10, "constant") == 1.0 for e in np.linspace(0, 25, 51))
    # warm-up [0, 4): from 1 down towards 0; tree phase [4, 10): from 1 again; then cycles of 10 epochs
    for start, length in ((0, 4), (4, 6), (10, 10), (20, 10)):
        assert factor(start, 4, 10, "cosine") == 1.0
        assert factor(start + length / 2, 4, 10, "cosine") == pytest.approx(0.5)
        assert factor(start + length / 4, 4, 10, "cosine") == pytest.approx((1 + np.sqrt(0.5)) / 2)
        assert 0 < factor(start + length - 1e-9, 4, 10, "cosine") < 1e-12
        inside = [factor(e, 4, 10, "cosine") for e in np.linspace(start, start + length, 40, endpoint=False)]
        assert np.all(np.diff(inside) < 0)
    assert factor(0.5, 0, 4, "cosine") == pytest.approx((1 + np.cos(np.pi / 8)) / 2)  # no warm-up


def test_cosine_schedule_sets_the_rate_of_every_step(X, monkeypatch):
    seen = []
    original = training.Trainer.step

    def spy(trainer, *args, **kwargs):
        seen.append((trainer.epoch, trainer.optimizer.param_groups[0]["lr"]))
        return original(trainer, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "step", spy)
    CoHiClust(max_epochs=5, lr=0.01, lr_schedule="cosine", **dict(PLAIN, warmup_epochs=2, batch_size=100)).fit(X)
    steps = len(X) // 100
    assert len(seen) == 5 * steps
    expected = [
        0.01 * training.learning_rate_factor(epoch + i / steps, 2, 5, "cosine")
        for epoch in range(5)
        for i in range(steps)
    ]
    assert [lr for _, lr in seen] == pytest.approx(expected, rel=1e-12)
    assert seen[0][1] == seen[2 * steps][1] == 0.01  # each phase starts at lr
    seen.clear()
    CoHiClust(max_epochs=2, lr=0.01, **dict(PLAIN, batch_size=100)).fit(X)
    assert {lr for _, lr in seen} == {0.01}  # "constant", the default


def test_cosine_schedule_follows_the_epoch_count_in_partial_fit_and_resume(X, tmp_path):
    params = dict(PARAMS, lr_schedule="cosine", max_epochs=4)
    full = CoHiClust(**params).fit(X)
    model = CoHiClust(**params)
    for _ in range(4):
        model.partial_fit(X)
    assert _losses(model.history_) == _losses(full.history_)
    assert _same_parameters(model, full)
    # a run interrupted (Ctrl-C) after epoch 3 resumes from its checkpoint exactly

    def interrupt(history):
        if len(history) == 3:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted"):
        stopped = CoHiClust(**params, checkpoint_dir=tmp_path, callbacks=[interrupt]).fit(X)
    assert len(stopped.history_) == 3
    resumed = CoHiClust(**params, checkpoint_dir=tmp_path).fit(X)
    assert _losses(resumed.history_) == _losses(full.history_)
    assert _same_parameters(resumed, full)
    assert _losses(CoHiClust(**dict(params, lr_schedule="constant")).fit(X).history_) != _losses(full.history_)


# ---------------------------------------------------------------- leaf balance
def test_leaf_balance_joins_the_objective_of_the_tree_phase_only(X):
    plain = CoHiClust(max_epochs=3, **PLAIN).fit(X)
    balanced = CoHiClust(max_epochs=3, leaf_balance=2.0, **PLAIN).fit(X)
    assert _losses(plain.history_)[0] == _losses(balanced.history_)[0]  # the same warm-up epoch
    # in the tree phase the regulariser entry carries the weighted KL divergence on top of the paper's term
    assert all(
        b["regularizer"] != p["regularizer"] for b, p in zip(balanced.history_[1:], plain.history_[1:], strict=True)
    )
    assert not _same_parameters(plain, balanced)


def test_leaf_balance_evens_out_the_leaves(small_digits):
    images, _ = small_digits
    params = dict(depth=3, n_clusters=5, max_epochs=10, batch_size=100, backbone="mlp", random_state=0)

    def divergence_from_equal_leaves(model):  # of the mean leaf probabilities, what the term pulls on
        leaf = model.node_mass_[-(2**3) :]
        share = leaf[model.module_.leaf_mask.numpy()] / leaf.sum()
        return float((share * np.log(share * len(share))).sum())

    plain, balanced = (
        divergence_from_equal_leaves(CoHiClust(leaf_balance=w, **params).fit(images)) for w in (0.0, 5.0)
    )
    assert balanced < plain / 2, (plain, balanced)
