"""The BoAmps output: a report `boamps_report_<run_id>.json` in the output directory at each
flush() and stop() (the last one written is the run's)."""

from __future__ import annotations

import json
import os

from carbonfast.compat.codecarbon.external.logger import logger
from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput
from carbonfast.compat.codecarbon.output_methods.boamps.mapper import map_emissions_to_boamps
from carbonfast.compat.codecarbon.output_methods.boamps.models import (
    BoAmpsHardware,
    BoAmpsHeader,
    BoAmpsTask,
    camel_to_snake,
)
from carbonfast.compat.codecarbon.output_methods.emissions_data import EmissionsData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _snake_keys(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {camel_to_snake(k): data[k] for k in keys if k in data}


class BoAmpsOutput(BaseOutput):
    """Writes BoAmps reports. What a measurement cannot know comes from you: the task
    (`BoAmpsTask(task_stage="inference", task_family="chatbot", ...)`), a header with the
    publisher, the quality, and infrastructure or environment details; or all of it from a
    dict or JSON file in BoAmps' own (camelCase) structure (`from_dict`, `from_file`, or the
    tracker's `metadata={"boamps": {...}}`)."""

    def __init__(
        self,
        output_dir: str = ".",
        task: BoAmpsTask | None = None,
        header: BoAmpsHeader | None = None,
        quality: str | None = None,
        infra_overrides: dict[str, Any] | None = None,
        environment_overrides: dict[str, Any] | None = None,
    ) -> None:
        os.makedirs(output_dir, exist_ok=True)
        self._output_dir = output_dir
        self._task = task
        self._header = header
        self._quality = quality
        self._infra_overrides = infra_overrides
        self._environment_overrides = environment_overrides
        # The last report written; None until one is.
        self.save_file_path: str | None = None

    @classmethod
    def from_file(cls, context_file_path: str, output_dir: str = ".") -> BoAmpsOutput:
        """From a JSON file of the context, in BoAmps' structure."""
        try:
            with open(context_file_path, encoding="utf-8") as f:
                context = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"BoAmps context file not found: {context_file_path}") from None
        return cls.from_dict(context, output_dir=output_dir)

    @classmethod
    def from_dict(cls, context: dict[str, Any], output_dir: str = ".") -> BoAmpsOutput:
        """From the context as a dict in BoAmps' structure: `task`, `header`, `quality`,
        `infrastructure` (cloudInstance, cloudService, infraType, components) and
        `environment` (location, powerSupplierType, powerSource, powerSourceCarbonIntensity);
        other keys are ignored."""
        if not isinstance(context, dict):
            raise TypeError(
                f"BoAmps metadata must be a dict, got {type(context).__name__}: give the "
                "context in BoAmps' structure, e.g. {'task': {'taskStage': 'inference'}}"
            )
        infra = None
        if "infrastructure" in context:
            given = context["infrastructure"]
            infra = _snake_keys(given, ("cloudInstance", "cloudService", "infraType"))
            if "components" in given:
                infra["components"] = [BoAmpsHardware.from_dict(c) for c in given["components"]]
        environment = None
        if "environment" in context:
            environment = _snake_keys(
                context["environment"],
                ("location", "powerSupplierType", "powerSource", "powerSourceCarbonIntensity"),
            )
        return cls(
            output_dir=output_dir,
            task=BoAmpsTask.from_dict(context["task"]) if "task" in context else None,
            header=BoAmpsHeader.from_dict(context["header"]) if "header" in context else None,
            quality=context.get("quality"),
            infra_overrides=infra,
            environment_overrides=environment,
        )

    def out(self, total: EmissionsData, delta: EmissionsData | None) -> None:
        from carbonfast.report.files import write_atomically

        try:
            report = map_emissions_to_boamps(
                total,
                task=self._task,
                header=self._header,
                quality=self._quality,
                infra_overrides=self._infra_overrides,
                environment_overrides=self._environment_overrides,
            )
            path = os.path.join(self._output_dir, f"boamps_report_{total.run_id}.json")
            write_atomically(path, json.dumps(report.to_dict(), indent=2))
            self.save_file_path = path
            logger.info(f"BoAmps report saved to {os.path.abspath(path)}")
        except Exception as e:
            logger.error(f"Failed to write BoAmps report: {e}", exc_info=True)
