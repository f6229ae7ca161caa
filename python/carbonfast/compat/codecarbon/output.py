"""Where a tracker's data goes: every output, and the records they take (CodeCarbon's
`codecarbon.output`)."""

from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput, OutputMethod
from carbonfast.compat.codecarbon.output_methods.boamps import BoAmpsOutput
from carbonfast.compat.codecarbon.output_methods.emissions_data import (
    EmissionsData,
    TaskEmissionsData,
)
from carbonfast.compat.codecarbon.output_methods.file import FileOutput
from carbonfast.compat.codecarbon.output_methods.http import CodeCarbonAPIOutput, HTTPOutput
from carbonfast.compat.codecarbon.output_methods.logger import (
    GoogleCloudLoggerOutput,
    LoggerOutput,
)
from carbonfast.compat.codecarbon.output_methods.metrics.logfire import LogfireOutput
from carbonfast.compat.codecarbon.output_methods.metrics.prometheus import PrometheusOutput

__all__ = [
    "BaseOutput",
    "BoAmpsOutput",
    "CodeCarbonAPIOutput",
    "EmissionsData",
    "FileOutput",
    "GoogleCloudLoggerOutput",
    "HTTPOutput",
    "LogfireOutput",
    "LoggerOutput",
    "OutputMethod",
    "PrometheusOutput",
    "TaskEmissionsData",
]
