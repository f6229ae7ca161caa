"""The Keras callback in a real Keras 3 fit (torch backend, CPU): the figures reach History."""

from __future__ import annotations

import os
from typing import Any

import pytest

import carbonfast as cf
from tests.fakes.powercap import FakePowercap

# The backend is chosen when keras is first imported: torch, so that no TensorFlow is needed.
os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("torch", reason="torch is not installed (scripts/test installs it)")
keras = pytest.importorskip("keras", reason="keras is not installed (scripts/test installs it)")
np = pytest.importorskip("numpy")

from carbonfast.integrations.keras import CarbonfastCallback  # noqa: E402

PACKAGE = "intel-rapl:0"
BATCH_UJ = 1_000_000
VAL_BATCH_UJ = 250_000


class _Draws(keras.callbacks.Callback):  # type: ignore[misc]
    """Advances the fake package's counter as if each batch drew a known energy."""

    def __init__(self, fake: FakePowercap) -> None:
        super().__init__()
        self.fake = fake

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.fake.add(PACKAGE, BATCH_UJ)

    def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
        self.fake.add(PACKAGE, VAL_BATCH_UJ)


def _model() -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_each_epoch_in_history_has_its_energy_with_validation_apart(fake: FakePowercap) -> None:
    x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    callback = CarbonfastCallback(meter=cf.Meter(fake.root, history="off"))
    history = _model().fit(
        x,
        y,
        batch_size=4,
        epochs=3,
        validation_data=(x[:8], y[:8]),
        callbacks=[_Draws(fake), callback],
        verbose=0,
    )
    h = history.history
    # Ten batches of 1 J per epoch; two validation batches of 0.25 J.
    assert h["energy/train_j"] == pytest.approx([10.0, 10.0, 10.0])
    assert h["energy/train_total_j"] == pytest.approx([10.0, 20.0, 30.0])
    assert h["energy/val_j"] == pytest.approx([0.5, 0.5, 0.5])
    assert all(w > 0 for w in h["power/train_w"])
    assert all(kg > 0 for kg in h["emissions/train_kg"])
    assert h["energy/estimated"] == [False, False, False]


def test_evaluate_alone_returns_its_energy(fake: FakePowercap) -> None:
    x = np.ones((8, 4), dtype="float32")
    callback = CarbonfastCallback(meter=cf.Meter(fake.root, history="off"))
    seen: dict[str, Any] = {}
    after = keras.callbacks.LambdaCallback(on_test_end=lambda logs: seen.update(logs))
    _model().evaluate(
        x, x[:, :1], batch_size=4, callbacks=[_Draws(fake), callback, after], verbose=0
    )
    assert callback.evaluation["energy/eval_j"] == pytest.approx(0.5)
    assert seen["energy/eval_j"] == pytest.approx(0.5)
