"""The outputs a tracker writes to: the built-in ones its arguments ask for, and how each is
called, so that an output that fails never stops the others or the measured code."""

from __future__ import annotations

import logging
import re

from carbonfast.compat.codecarbon.external.logger import logger
from carbonfast.compat.codecarbon.output_methods.base_output import OutputMethod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.compat.codecarbon.output_methods.boamps import BoAmpsOutput


def _output_methods(methods: Any) -> list[OutputMethod]:
    """OutputMethod values from a list of them (or of their names) or a comma-separated
    string; an unknown name is logged and left out."""
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    out: list[OutputMethod] = []
    for item in items:
        name = item.value if isinstance(item, OutputMethod) else str(item).strip().lower()
        if not name:
            continue
        try:
            out.append(OutputMethod(name))
        except ValueError:
            logger.error(
                f"Unknown output method {item!r}; accepted: "
                + ", ".join(m.value for m in OutputMethod)
                + ". It is ignored."
            )
    return out


def _built_in_outputs(
    methods: set[OutputMethod],
    *,
    output_file: str,
    output_dir: str,
    on_csv_write: str,
    logging_logger: Any,
    emissions_endpoint: str | None,
    api_endpoint: str,
    experiment_id: str,
    api_key: str | None,
    conf: dict[str, Any],
    project_name: str,
    experiment_name: str,
    prometheus_url: str,
    metadata: dict[str, Any] | str | None,
) -> list[Any]:
    """The built-in outputs that `methods` and `emissions_endpoint` ask for."""
    handlers: list[Any] = []
    if OutputMethod.CSV in methods:
        from carbonfast.compat.codecarbon.output_methods.file import FileOutput

        handlers.append(FileOutput(output_file, output_dir, on_csv_write))
    if OutputMethod.LOGGER in methods:
        output = logging_logger
        if isinstance(output, logging.Logger):
            from carbonfast.compat.codecarbon.output_methods.logger import LoggerOutput

            output = LoggerOutput(output)
        if output is None or isinstance(output, str):
            logger.error(
                "The logger output needs logging_logger=LoggerOutput(your_logger) (or a "
                "logging.Logger); nothing is logged to a logger of yours"
            )
        else:
            handlers.append(output)
    if emissions_endpoint:
        from carbonfast.compat.codecarbon.output_methods.http import HTTPOutput

        handlers.append(HTTPOutput(emissions_endpoint))
    if OutputMethod.API in methods:
        from carbonfast.compat.codecarbon.output_methods.http import CodeCarbonAPIOutput

        handlers.append(
            CodeCarbonAPIOutput(
                endpoint_url=api_endpoint,
                experiment_id=experiment_id,
                api_key=api_key,
                conf=conf,
            )
        )
    if OutputMethod.PROMETHEUS in methods:
        from carbonfast.compat.codecarbon.output_methods.metrics.prometheus import (
            PrometheusOutput,
        )

        job = re.sub(r"[^a-zA-Z0-9_-]", "_", f"{project_name}_{experiment_name}")
        handlers.append(PrometheusOutput(prometheus_url, job_name=job))
    if OutputMethod.LOGFIRE in methods:
        from carbonfast.compat.codecarbon.output_methods.metrics.logfire import LogfireOutput

        handlers.append(LogfireOutput())
    if OutputMethod.BOAMPS in methods:
        handlers.append(_boamps_output(metadata, output_dir))
    return handlers


def _boamps_output(metadata: dict[str, Any] | str | None, output_dir: str) -> BoAmpsOutput:
    """The BoAmps output, with what `metadata` (a dict, or a JSON file of one) holds under
    "boamps" (or the whole dict, as older CodeCarbon read it)."""
    import json

    from carbonfast.compat.codecarbon.output_methods.boamps import BoAmpsOutput

    if isinstance(metadata, str) and metadata:
        try:
            with open(metadata, encoding="utf-8") as f:
                metadata = json.load(f)
        except FileNotFoundError:
            logger.error(f"Metadata file not found: {metadata}")
            metadata = None
        except (OSError, ValueError) as e:
            logger.error(f"Invalid JSON in metadata file '{metadata}': {e}")
            metadata = None
    if isinstance(metadata, dict):
        context = metadata.get("boamps", metadata)
        if isinstance(context, dict) and context:
            return BoAmpsOutput.from_dict(context, output_dir=output_dir)
    return BoAmpsOutput(output_dir=output_dir)


def _takes_live_updates(handler: object) -> bool:
    """Whether an output overrides BaseOutput.live_out (CodeCarbon's BaseOutput included)."""
    for klass in type(handler).__mro__:
        if "live_out" in vars(klass):
            return klass.__name__ != "BaseOutput"
    return False


def _call(handler: object, method: str, *args: Any) -> None:
    """handler.method(*args); a failure is logged, never raised into the measured code."""
    try:
        getattr(handler, method)(*args)
    except Exception as e:
        logger.error(
            f"{type(handler).__name__}.{method}() failed: {e}; the other outputs and the run go on"
        )
        logger.debug("the failure", exc_info=True)
