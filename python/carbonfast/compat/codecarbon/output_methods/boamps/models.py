"""BoAmps (Boavizta's format for reporting the energy of AI and ML work) as dataclasses.

Fields are snake_case here and camelCase in the JSON (`to_dict`, `from_dict`); a field left None
is left out of the JSON. The schema: https://github.com/Boavizta/BoAmps/tree/main/model
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, is_dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T", bound="_Model")


def snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def camel_to_snake(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _json(value: Any) -> Any:
    if isinstance(value, list):
        return [_json(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {
            snake_to_camel(f.name): _json(getattr(value, f.name))
            for f in fields(value)
            if getattr(value, f.name) is not None
        }
    return value


class _Model:
    """to_dict / from_dict for the models; `_nested` names the fields holding other models
    (a list of them where the field is a list)."""

    _nested: dict[str, type[_Model]] = {}  # noqa: RUF012 (class-level table)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _json(self)
        return out

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            name = camel_to_snake(key)
            model = cls._nested.get(name)
            if model is not None and isinstance(value, list):
                value = [model.from_dict(v) if isinstance(v, dict) else v for v in value]
            elif model is not None and isinstance(value, dict):
                value = model.from_dict(value)
            kwargs[name] = value
        return cls(**kwargs)


@dataclass
class BoAmpsPublisher(_Model):
    name: str | None = None
    division: str | None = None
    project_name: str | None = None
    confidentiality_level: str | None = None
    public_key: str | None = None


@dataclass
class BoAmpsHeader(_Model):
    licensing: str | None = None
    format_version: str | None = None
    format_version_specification_uri: str | None = None
    report_id: str | None = None
    report_datetime: str | None = None
    report_status: str | None = None
    publisher: BoAmpsPublisher | None = None


@dataclass
class BoAmpsAlgorithm(_Model):
    training_type: str | None = None
    algorithm_type: str | None = None
    algorithm_name: str | None = None
    algorithm_uri: str | None = None
    foundation_model_name: str | None = None
    foundation_model_uri: str | None = None
    parameters_number: float | None = None
    framework: str | None = None
    framework_version: str | None = None
    class_path: str | None = None
    layers_number: float | None = None
    epochs_number: float | None = None
    optimizer: str | None = None
    quantization: str | None = None


@dataclass
class BoAmpsDataset(_Model):
    data_usage: str | None = None
    data_type: str | None = None
    data_format: str | None = None
    data_size: float | None = None
    data_quantity: float | None = None
    shape: str | None = None
    source: str | None = None
    source_uri: str | None = None
    owner: str | None = None


@dataclass
class BoAmpsTask(_Model):
    task_stage: str | None = None
    task_family: str | None = None
    nb_request: float | None = None
    algorithms: list[BoAmpsAlgorithm] | None = None
    dataset: list[BoAmpsDataset] | None = None
    measured_accuracy: float | None = None
    estimated_accuracy: str | None = None
    task_description: str | None = None


@dataclass
class BoAmpsMeasure(_Model):
    measurement_method: str | None = None
    manufacturer: str | None = None
    version: str | None = None
    cpu_tracking_mode: str | None = None
    gpu_tracking_mode: str | None = None
    average_utilization_cpu: float | None = None
    average_utilization_gpu: float | None = None
    power_calibration_measurement: float | None = None
    duration_calibration_measurement: float | None = None
    power_consumption: float | None = None
    measurement_duration: float | None = None
    measurement_date_time: str | None = None


@dataclass
class BoAmpsSystem(_Model):
    os: str | None = None
    distribution: str | None = None
    distribution_version: str | None = None


@dataclass
class BoAmpsSoftware(_Model):
    language: str | None = None
    version: str | None = None


@dataclass
class BoAmpsHardware(_Model):
    component_name: str | None = None
    component_type: str | None = None
    nb_component: int | None = None
    memory_size: float | None = None
    manufacturer: str | None = None
    family: str | None = None
    series: str | None = None
    share: float | None = None


@dataclass
class BoAmpsInfrastructure(_Model):
    infra_type: str | None = None
    cloud_provider: str | None = None
    cloud_instance: str | None = None
    cloud_service: str | None = None
    components: list[BoAmpsHardware] | None = None


@dataclass
class BoAmpsEnvironment(_Model):
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location: str | None = None
    power_supplier_type: str | None = None
    power_source: str | None = None
    power_source_carbon_intensity: float | None = None


@dataclass
class BoAmpsReport(_Model):
    header: BoAmpsHeader | None = None
    task: BoAmpsTask | None = None
    measures: list[BoAmpsMeasure] | None = None
    system: BoAmpsSystem | None = None
    software: BoAmpsSoftware | None = None
    infrastructure: BoAmpsInfrastructure | None = None
    environment: BoAmpsEnvironment | None = None
    quality: str | None = None


BoAmpsHeader._nested = {"publisher": BoAmpsPublisher}
BoAmpsTask._nested = {"algorithms": BoAmpsAlgorithm, "dataset": BoAmpsDataset}
BoAmpsInfrastructure._nested = {"components": BoAmpsHardware}
BoAmpsReport._nested = {
    "header": BoAmpsHeader,
    "task": BoAmpsTask,
    "measures": BoAmpsMeasure,
    "system": BoAmpsSystem,
    "software": BoAmpsSoftware,
    "infrastructure": BoAmpsInfrastructure,
    "environment": BoAmpsEnvironment,
}
