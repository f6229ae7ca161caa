"""BoAmps reports (Boavizta's format for the energy of AI and ML work) from a tracker's runs:
`output_methods=[OutputMethod.BOAMPS]`, or a BoAmpsOutput of your own in `output_handlers`."""

from carbonfast.compat.codecarbon.output_methods.boamps.mapper import map_emissions_to_boamps
from carbonfast.compat.codecarbon.output_methods.boamps.models import (
    BoAmpsAlgorithm,
    BoAmpsDataset,
    BoAmpsEnvironment,
    BoAmpsHardware,
    BoAmpsHeader,
    BoAmpsInfrastructure,
    BoAmpsMeasure,
    BoAmpsPublisher,
    BoAmpsReport,
    BoAmpsSoftware,
    BoAmpsSystem,
    BoAmpsTask,
)
from carbonfast.compat.codecarbon.output_methods.boamps.output import BoAmpsOutput

__all__ = [
    "BoAmpsAlgorithm",
    "BoAmpsDataset",
    "BoAmpsEnvironment",
    "BoAmpsHardware",
    "BoAmpsHeader",
    "BoAmpsInfrastructure",
    "BoAmpsMeasure",
    "BoAmpsOutput",
    "BoAmpsPublisher",
    "BoAmpsReport",
    "BoAmpsSoftware",
    "BoAmpsSystem",
    "BoAmpsTask",
    "map_emissions_to_boamps",
]
