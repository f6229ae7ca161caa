"""Emissions sent to a logger of yours: a Python logging.Logger, or a Google Cloud Logging
logger. Each record is the run's data as one JSON object."""

from __future__ import annotations

import dataclasses
import json
import logging

from carbonfast.compat.codecarbon.external.logger import logger as _own_logger
from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput
from carbonfast.compat.codecarbon.output_methods.emissions_data import EmissionsData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class LoggerOutput(BaseOutput):
    """Logs each flush, stop and live update of the run, as JSON, to `logger` at `severity`:
    `EmissionsTracker(save_to_logger=True, logging_logger=LoggerOutput(my_logger))`."""

    def __init__(self, logger: Any, severity: int = logging.INFO) -> None:
        self.logger = logger
        self.logging_severity = severity

    def out(self, total: EmissionsData, delta: EmissionsData | None) -> None:
        try:
            payload = dataclasses.asdict(total)
            self.logger.log(self.logging_severity, msg=json.dumps(payload))
        except Exception as e:
            _own_logger.error(f"LoggerOutput could not log the emissions: {e}", exc_info=True)

    def live_out(self, total: EmissionsData, delta: EmissionsData | None) -> None:
        self.out(total, None)


class GoogleCloudLoggerOutput(LoggerOutput):
    """Logs to Google Cloud Logging: `GoogleCloudLoggerOutput(client.logger(name))`, each
    record a structured entry."""

    def out(self, total: EmissionsData, delta: EmissionsData | None) -> None:
        try:
            payload = dataclasses.asdict(total)
            self.logger.log_struct(payload, severity=self.logging_severity)
        except Exception as e:
            _own_logger.error(
                f"GoogleCloudLoggerOutput could not log the emissions: {e}", exc_info=True
            )

    def live_out(self, total: EmissionsData, delta: EmissionsData | None) -> None:
        self.out(total, None)
