"""What the training-loop callbacks cost a training step, in one run.

Prints, side by side with no callback:
  - each callback's per-step hook alone (the test every step makes, on a step that does not
    report), and its reporting hook alone (the window closed and reopened, the figures made),
    timed directly on a fake powercap tree (3 domains) and on a machine without counters
    (estimated), in microseconds per call;
  - a real training loop per framework (transformers.Trainer with a one-layer BERT, Lightning
    with a linear model, Keras 3 on torch with a dense layer), CPU only, with and without the
    callback, runs interleaved, as seconds per step and their ratio.
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


def _hf_loop(steps: int, with_callback: bool, out: str) -> float:
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

    callbacks = [CarbonfastCallback(label=f"hf-{time.monotonic_ns()}")] if with_callback else []
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


def _lightning_loop(steps: int, with_callback: bool, out: str) -> float:
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
    callbacks = [CarbonfastCallback(label=f"pl-{time.monotonic_ns()}")] if with_callback else []
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


def _keras_loop(steps: int, with_callback: bool, out: str) -> float:
    import keras
    import numpy as np

    from carbonfast.integrations.keras import CarbonfastCallback

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(40, 16)).astype("float32")
    callbacks = [CarbonfastCallback(label=f"keras-{time.monotonic_ns()}")] if with_callback else []
    epochs = max(1, steps // 10)
    t0 = time.perf_counter()
    model.fit(x, x[:, :1], batch_size=4, epochs=epochs, callbacks=callbacks, verbose=0)
    return (time.perf_counter() - t0) / (epochs * 10)


def loop_costs(steps: int, repeats: int) -> list[tuple[str, float, float]]:
    """(framework, s/step without, s/step with): medians of interleaved runs, after one
    warm-up run of each."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    rows = []
    for name, loop in (
        ("transformers", _hf_loop),
        ("lightning", _lightning_loop),
        ("keras", _keras_loop),
    ):
        with tempfile.TemporaryDirectory() as out:
            loop(20, False, out)
            loop(20, True, out)
            bare, with_cb = [], []
            for _ in range(repeats):
                bare.append(loop(steps, False, out))
                with_cb.append(loop(steps, True, out))
        rows.append((name, statistics.median(bare), statistics.median(with_cb)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer calls and steps")
    opts = p.parse_args()
    n = 20_000 if opts.quick else 100_000
    steps, repeats = (100, 3) if opts.quick else (300, 5)
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
    print(f"\ntraining loops on CPU, {steps} steps, median of {repeats} interleaved runs")
    print(f"  {'framework':<14}{'no callback':>14}{'callback':>14}{'ratio':>9}{'per step':>12}")
    for name, bare, with_cb in loop_costs(steps, repeats):
        print(
            f"  {name:<14}{bare * 1e3:>11.3f} ms{with_cb * 1e3:>11.3f} ms"
            f"{with_cb / bare:>9.3f}{(with_cb - bare) * 1e6:>+9.1f} us"
        )


if __name__ == "__main__":
    main()
