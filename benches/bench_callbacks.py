"""What the training-loop callbacks cost a training step, in one run.

Prints, side by side with no callback:
  - each callback's per-step hook alone (the test every step makes, on a step that does not
    report), and its reporting hook alone (the window closed and reopened, the figures made),
    timed directly on a fake powercap tree (3 domains) and on a machine without counters
    (estimated), in microseconds per call;
  - a real training loop per framework (transformers.Trainer with a one-layer BERT, Lightning
    with a linear model, Keras 3 on torch with a dense layer), CPU only, one torch thread, with
    no callback, with the framework's own do-nothing callback (what any callback costs in the
    framework's dispatch) and with carbonfast's, runs interleaved, as seconds per step (the
    fastest run of each: on a shared machine the others time its neighbours too) and their
    differences. A difference of a few percent either way is the machine's noise.
The loops log every 10 steps (Keras: per epoch of 10 batches) with or without the callback,
so the difference is the callback's alone.

    python benches/bench_callbacks.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ["CARBONFAST_HISTORY"] = "off"
os.environ["CARBONFAST_GPU"] = "off"

import carbonfast as cf
from tests.fakes.powercap import FakePowercap, three_domain_tree


def per_call_us(f: Any, n: int) -> float:
    """Median over 5 rounds of the time per call of `f`, in microseconds."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(rounds)


class _Obj:
    """A stand-in for the frameworks' arguments, holding what the hooks read."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def hook_costs(meter: cf.Meter, n: int) -> list[tuple[str, float, float]]:
    """(callback, per-step hook us, reporting hook us) with the frameworks' real callbacks."""
    from carbonfast.integrations.keras import CarbonfastCallback as KerasCallback
    from carbonfast.integrations.lightning import CarbonfastCallback as LightningCallback
    from carbonfast.integrations.transformers import CarbonfastCallback as HFCallback

    rows = []
    hf = HFCallback(meter=meter, label="bench-hf")
    args = _Obj(eval_strategy="no")
    state = _Obj(global_step=7, eval_steps=None, log_history=[])
    control = _Obj(should_evaluate=False)
    hf.on_init_end(args, state, control)
    step = per_call_us(lambda: hf.on_step_end(args, state, control), n)
    report = per_call_us(lambda: hf.on_log(args, state, control, logs={"loss": 1.0}), n // 10)
    rows.append(("transformers", step, report))

    lightning = LightningCallback(meter=meter, label="bench-lightning")
    quiet = _Obj(global_step=7, log_every_n_steps=10, loggers=[], sanity_checking=False)
    loud = _Obj(global_step=10, log_every_n_steps=10, loggers=[], sanity_checking=False)
    lightning.on_fit_start(quiet, None)

    def lightning_report() -> None:
        lightning._reported_step = -1
        lightning.on_train_batch_end(loud, None, None, None, 0)

    step = per_call_us(lambda: lightning.on_train_batch_end(quiet, None, None, None, 0), n)
    report = per_call_us(lightning_report, n // 10)
    rows.append(("lightning", step, report))

    keras_cb = KerasCallback(meter=meter, label="bench-keras")
    keras_cb.on_train_begin()
    # Keras calls no hook of this callback per batch: it defines none.
    report = per_call_us(lambda: keras_cb.on_epoch_end(0, {"loss": 1.0}), n // 10)
    rows.append(("keras", 0.0, report))
    hf.steps.stop("train")
    lightning.steps.stop("train")
    keras_cb.steps.stop("train")
    return rows


def _callbacks(kind: str, empty: Any, carbonfast: Any) -> list[Any]:
    """No callback, the framework's own do-nothing callback (what one more callback costs in
    the framework's dispatch), or carbonfast's."""
    if kind == "none":
        return []
    if kind == "empty":
        return [empty()]
    return [carbonfast(label=f"bench-{time.monotonic_ns()}")]


def _hf_loop(steps: int, kind: str, out: str) -> float:
    import torch
    import transformers

    transformers.logging.set_verbosity_error()

    class Data(torch.utils.data.Dataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return 4 * steps

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input_ids": torch.full((8,), i % 100), "labels": torch.tensor(i % 2)}

    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    args = transformers.TrainingArguments(
        output_dir=out,
        max_steps=steps,
        logging_steps=10,
        per_device_train_batch_size=4,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        log_level="error",
    )
    from carbonfast.integrations.transformers import CarbonfastCallback

    callbacks = _callbacks(kind, transformers.TrainerCallback, CarbonfastCallback)
    trainer = transformers.Trainer(
        model=transformers.BertForSequenceClassification(config),
        args=args,
        train_dataset=Data(),
        callbacks=callbacks,
    )
    trainer.remove_callback(transformers.PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    return (time.perf_counter() - t0) / steps


def _lightning_loop(steps: int, kind: str, out: str) -> float:
    import lightning.pytorch as L
    import torch

    from carbonfast.integrations.lightning import CarbonfastCallback

    class Model(L.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(16, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.randn(4 * steps, 16), torch.randn(4 * steps, 1))
    callbacks = _callbacks(kind, L.Callback, CarbonfastCallback)
    trainer = L.Trainer(
        max_steps=steps,
        log_every_n_steps=10,
        logger=L.loggers.CSVLogger(out),
        callbacks=callbacks,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=out,
    )
    t0 = time.perf_counter()
    trainer.fit(Model(), torch.utils.data.DataLoader(data, batch_size=4))
    return (time.perf_counter() - t0) / steps


def _keras_loop(steps: int, kind: str, out: str) -> float:
    import keras
    import numpy as np

    from carbonfast.integrations.keras import CarbonfastCallback

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(40, 16)).astype("float32")
    callbacks = _callbacks(kind, keras.callbacks.Callback, CarbonfastCallback)
    epochs = max(1, steps // 10)
    t0 = time.perf_counter()
    model.fit(x, x[:, :1], batch_size=4, epochs=epochs, callbacks=callbacks, verbose=0)
    return (time.perf_counter() - t0) / (epochs * 10)


def loop_costs(steps: int, repeats: int) -> list[tuple[str, float, float, float]]:
    """(framework, s/step with no callback, with an empty one, with carbonfast's): the fastest
    of interleaved runs (the least held up by whatever else the machine runs), after a
    warm-up run of each."""
    import logging
    import warnings

    import torch

    # One thread: a tiny model gains nothing from more, and the timings are steadier.
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    rows = []
    for name, loop in (
        ("transformers", _hf_loop),
        ("lightning", _lightning_loop),
        ("keras", _keras_loop),
    ):
        kinds = ("none", "empty", "carbonfast")
        times: dict[str, list[float]] = {k: [] for k in kinds}
        with tempfile.TemporaryDirectory() as out:
            for kind in kinds:
                loop(20, kind, out)
            for i in range(repeats):
                # Each in turn first: whatever a run leaves behind falls on each alike.
                for kind in kinds[i % 3 :] + kinds[: i % 3]:
                    times[kind].append(loop(steps, kind, out))
        rows.append((name, *(min(times[k]) for k in kinds)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer calls and steps")
    opts = p.parse_args()
    n = 20_000 if opts.quick else 100_000
    steps, repeats = (100, 3) if opts.quick else (300, 9)
    with tempfile.TemporaryDirectory() as tmp:
        fake: FakePowercap = three_domain_tree(Path(tmp) / "sys")
        (Path(tmp) / "empty").mkdir()
        measured = cf.Meter(fake.root, history="off")
        estimated = cf.Meter(Path(tmp) / "empty", history="off")
        print("hooks called directly, us per call (fake powercap, 3 domains | estimated)")
        print(f"  {'callback':<14}{'per-step hook':>26}{'reporting hook':>28}")
        for (name, s1, r1), (_, s2, r2) in zip(
            hook_costs(measured, n), hook_costs(estimated, n), strict=True
        ):
            print(f"  {name:<14}{s1:>12.3f} | {s2:>11.3f}{r1:>14.1f} | {r2:>11.1f}")
    print(f"\ntraining loops on CPU, {steps} steps, fastest of {repeats} interleaved runs")
    print(
        f"  {'framework':<14}{'no callback':>14}{'empty one':>14}{'carbonfast':>14}"
        f"{'ratio':>8}{'vs none':>12}{'vs empty':>12}"
    )
    for name, bare, empty, with_cb in loop_costs(steps, repeats):
        print(
            f"  {name:<14}{bare * 1e3:>11.3f} ms{empty * 1e3:>11.3f} ms{with_cb * 1e3:>11.3f} ms"
            f"{with_cb / bare:>8.3f}{(with_cb - bare) * 1e6:>+9.1f} us"
            f"{(with_cb - empty) * 1e6:>+9.1f} us"
        )


if __name__ == "__main__":
    main()
