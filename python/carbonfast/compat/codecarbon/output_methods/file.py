"""emissions.csv and the task file, written as CodeCarbon writes them (see
carbonfast.report.emissions_csv for the format): safely, whole or not at all, and never
through a symlink."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import fields

from carbonfast.compat.codecarbon.external.logger import logger
from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput
from carbonfast.compat.codecarbon.output_methods.emissions_data import (
    EmissionsData,
    TaskEmissionsData,
)

_TASK_COLUMNS = tuple(f.name for f in fields(TaskEmissionsData))
# What an online CodeCarbon finds out from the machine's address.
_LOOKED_UP = ("country_name", "country_iso_code", "region", "longitude", "latitude")


class FileOutput(BaseOutput):
    """Writes a row per flush() and stop() to `output_dir/output_file_name`: appended with
    on_csv_write="append", or in place of the run's earlier row with "update"; and, for a run
    with tasks, `emissions_<experiment_name>_<run_id>.csv` with a row per task."""

    def __init__(
        self, output_file_name: str, output_dir: str, on_csv_write: str = "append"
    ) -> None:
        if on_csv_write not in {"append", "update"}:
            raise ValueError(
                f"Unknown `on_csv_write` value: {on_csv_write!r}; use 'append' (a row per "
                "flush and stop) or 'update' (one row per run, kept up to date)"
            )
        if not os.path.exists(output_dir):
            raise OSError(
                f"Folder '{output_dir}' doesn't exist ! Create it, or give an existing output_dir"
            )
        self.output_file_name: str = output_file_name
        self.output_dir: str = output_dir
        self.on_csv_write: str = on_csv_write
        self.save_file_path = os.path.join(output_dir, output_file_name)
        logger.info(
            f"Emissions data (if any) will be saved to file {os.path.abspath(self.save_file_path)}"
        )

    def out(self, total: EmissionsData, delta: EmissionsData | None) -> None:
        from carbonfast.report import emissions_csv

        row = dict(total.values)
        if self.on_csv_write == "update":
            # Whether the run has a row yet is read under the file's lock, with the write:
            # writers at once (threads or processes) leave one row per run.
            emissions_csv.replace_run(self.save_file_path, row)
        else:
            emissions_csv.append(self.save_file_path, row)

    def task_out(self, data: list[TaskEmissionsData], experiment_name: str) -> None:
        """Rewrites the run's task file with a row per task, under the header CodeCarbon's
        would have. CodeCarbon's pandas leaves out a column empty in every row (offline: region,
        longitude, latitude). Online, CodeCarbon always fills in where the machine is (from
        its address, or its Canadian fallback), which the drop-in never looks up: those
        columns stay, empty, so that scripts reading them by name work alike."""
        from carbonfast.report.files import write_atomically

        rows = [dict(d.values) for d in data]
        located = any(r["country_iso_code"] is not None for r in rows)
        columns = [
            c
            for c in _TASK_COLUMNS
            if any(r[c] is not None for r in rows) or (c in _LOOKED_UP and not located)
        ]
        text = io.StringIO()
        writer = csv.DictWriter(
            text, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        name = f"emissions_{experiment_name}_{data[0].run_id}.csv"
        write_atomically(os.path.join(self.output_dir, name), text.getvalue())
