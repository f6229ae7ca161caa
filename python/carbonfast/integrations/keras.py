"""`CarbonfastCallback` for Keras 3 (any backend).

    from carbonfast.integrations.keras import CarbonfastCallback

    history = model.fit(x, y, epochs=10, validation_split=0.1, callbacks=[CarbonfastCallback()])
    history.history["energy/train_j"]        # joules per epoch

Each epoch's logs, and so `History.history`, get `energy/train_j`, `power/train_w`,
`emissions/train_kg` for the epoch's training, `energy/train_total_j`,
`emissions/train_total_kg` since `fit` began, and `energy/estimated`; where the epoch
validates, the same with `val`, measured over the validation alone. `model.evaluate` outside
`fit` gives the `eval` figures to the callbacks' `on_test_end` logs and keeps them in the
callback's `evaluation` (Keras returns a copy of the logs, made before the callbacks see
them).
"""

from __future__ import annotations

from typing import Any

try:
    import keras
except ImportError as e:  # pragma: no cover - depends on what is installed
    raise ImportError("carbonfast.integrations.keras needs Keras 3: pip install keras") from e

from carbonfast.integrations._steps import StepMeter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from carbonfast.meter import Meter


class CarbonfastCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Adds the energy, power and emissions of each epoch to its logs (see the module's
    help). `meter`: the carbonfast Meter to measure on (default: carbonfast's default meter);
    `label`: the name of the loop's windows in the history."""

    def __init__(self, meter: Meter | None = None, label: str = "keras.Model.fit") -> None:
        super().__init__()
        self.steps = StepMeter(meter, label)
        self._fitting = False
        self.evaluation: dict[str, float | bool] = {}
        """The figures of the last `model.evaluate` outside `fit`."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._fitting = True
        self.steps.mark("before training")

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.steps.mark("train" if self._fitting else "before evaluation")

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._fitting:
            self.steps.mark("val")  # reported with the epoch's logs
        else:
            self.evaluation = self.steps.report("eval")
            if logs is not None:
                logs.update(self.evaluation)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs.update(self.steps.report("train"))
            logs.update(self.steps.take("val"))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._fitting = False
        self.steps.stop("train")
