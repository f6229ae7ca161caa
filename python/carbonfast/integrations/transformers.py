"""`CarbonfastCallback` for the Hugging Face `transformers.Trainer`.

    from carbonfast.integrations.transformers import CarbonfastCallback

    trainer = Trainer(model, args, train_dataset=..., callbacks=[CarbonfastCallback()])

Each training log (every `logging_steps`) gets `energy/train_j`, `power/train_w`,
`emissions/train_kg` since the previous one, `energy/train_total_j` and
`emissions/train_total_kg` since training began, and `energy/estimated`; each evaluation's log
the same with `eval` in place of `train`, measured from the evaluation's start to its log, so
that training and evaluation are never mixed. `trainer.predict` adds the `predict` figures to
the metrics it returns.

Where the figures land. `Trainer.log` appends a copy of the logs to `state.log_history` (what
trainer_state.json keeps) and then hands the logs dict to every callback's `on_log` in turn.
The callback adds its figures to both: the last entry of `state.log_history`, always, and the
logs dict, which the callbacks after it see. The reporters that `report_to` installs
(TensorBoard, W&B, MLflow...) are added before the callbacks given to the Trainer, so to reach
them the callback has to come first: `CarbonfastCallback.add_to(trainer)` puts it there.
"""

from __future__ import annotations

from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "carbonfast.integrations.transformers needs transformers: pip install transformers"
    ) from e

from carbonfast.integrations._steps import Figure, StepMeter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from carbonfast.meter import Meter


class CarbonfastCallback(TrainerCallback):  # type: ignore[misc]
    """Adds the energy, power and emissions since the last log to the Trainer's logs (see
    the module's help). `meter`: the carbonfast Meter to measure on (default: carbonfast's
    default meter); `label`: the name of the loop's windows in the history."""

    def __init__(self, meter: Meter | None = None, label: str = "transformers.Trainer") -> None:
        self.steps = StepMeter(meter, label)
        self._evaluating = False

    @classmethod
    def add_to(cls, trainer: Any, **kwargs: Any) -> CarbonfastCallback:
        """A callback put first in `trainer`'s callbacks, so that the reporters of
        `report_to` log its figures too; returns it."""
        callback = cls(**kwargs)
        trainer.callback_handler.callbacks.insert(0, callback)
        return callback

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Opened with the Trainer, so that an evaluation before any training is measured.
        self.steps.start()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # What came before training (loading, a first evaluation's tail) is not training's.
        self.steps.mark("before training")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The one per-step test: an evaluation follows this step without a training log before
        # it, so the steps since that log are closed here as training. `should_evaluate` is
        # set by the Trainer's flow callback, which comes before this one unless `add_to` put
        # this one first: the strategy is then read as that callback reads it.
        eval_steps = getattr(state, "eval_steps", None)
        if control.should_evaluate or (
            args.eval_strategy == "steps" and eval_steps and state.global_step % eval_steps == 0
        ):
            self.steps.mark("train")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if args.eval_strategy == "epoch" or control.should_evaluate:
            self.steps.mark("train")

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._evaluating = True

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is None:
            return
        evaluation = self._evaluating or any(k.startswith("eval_") for k in logs)
        self._evaluating = False
        found = self.steps.report("eval" if evaluation else "train")
        _add(state, logs, found)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._evaluating = False

    def on_predict(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any], **kwargs: Any
    ) -> None:
        self._evaluating = False
        metrics.update(self.steps.report("predict"))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The interval stays open: an evaluation after training counts from here.
        self.steps.mark("train")


def _add(state: Any, logs: dict[str, Any], found: dict[str, Figure]) -> None:
    """Adds the figures to the logs dict and to the entry that Trainer.log appended to the
    log history just before calling the callbacks (a copy of the logs, with the step)."""
    history = getattr(state, "log_history", None)
    if history:
        last = history[-1]
        if last.get("step") == state.global_step and all(k in last for k in logs):
            last.update(found)
    logs.update(found)
