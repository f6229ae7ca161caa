"""A task of a tracker: a named part of a run, measured on its own."""

from __future__ import annotations

import time
import uuid
from dataclasses import fields

from carbonfast.compat.codecarbon.output_methods.emissions_data import (
    EmissionsData,
    TaskEmissionsData,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from carbonfast.compat.codecarbon._system import Usage
    from carbonfast.measurement import Measurement
    from carbonfast.record import Record
    from carbonfast.windows import Window

_TASK_FIELDS = tuple(f.name for f in fields(TaskEmissionsData) if f.name != "task_name")


class Task:
    """One task, as `tracker._tasks[name]` holds it: `task_name`, `is_active`, and once it is
    stopped `emissions_data`, the EmissionsData stop_task() returned."""

    is_active: bool
    emissions_data: EmissionsData

    def __init__(self, task_name: str) -> None:
        self.task_id: str = task_name + str(uuid.uuid4())
        self.task_name: str = task_name
        self.start_time = time.perf_counter()
        self.is_active = True
        # The carbonfast window measuring the task, and what the tracker needs to describe it.
        self._window: Window | None = None
        self._measurement: Measurement | None = None
        self.usage: Usage | None = None

    def begin(self, window: Window, usage: Usage) -> None:
        """Opens the task's window; `usage` samples the machine's load while it runs."""
        self.usage = usage
        self._window = window
        self._measurement = window.__enter__()

    def end(self) -> Record:
        """Closes the task's window and returns its record."""
        assert self._window is not None and self._measurement is not None
        self._window.__exit__(None, None, None)
        return self._measurement.record()

    def out(self) -> TaskEmissionsData:
        """The task's row of the task file."""
        data = self.emissions_data
        return TaskEmissionsData(
            task_name=self.task_name, **{name: getattr(data, name) for name in _TASK_FIELDS}
        )

    def __repr__(self) -> str:
        state = "running" if self.is_active else "stopped"
        return f"Task(task_name={self.task_name!r}, {state})"
