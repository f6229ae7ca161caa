"""Emissions pushed to a Prometheus Pushgateway, as CodeCarbon pushes them: gauges named
codecarbon_* (duration, emissions, emissions_rate, cpu/gpu/ram power and energy,
energy_consumed) of the part since the last push, and the counter codecarbon_energy_total.

Needs prometheus-client (`pip install prometheus-client`), imported when the output is made;
without it, or without a reachable gateway, an error is logged and the run goes on. A gateway
that asks for credentials gets PROMETHEUS_USERNAME and PROMETHEUS_PASSWORD.
"""

from __future__ import annotations

import dataclasses
import os

from carbonfast.compat.codecarbon.external.logger import logger
from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput
from carbonfast.compat.codecarbon.output_methods.emissions_data import EmissionsData
from carbonfast.compat.codecarbon.output_methods.metrics import metric_docs as docs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LABELS = (
    "project_name",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "codecarbon_version",
    "cpu_model",
    "cpu_count",
    "gpu_model",
    "gpu_count",
    "tracking_mode",
    "ram_total_size",
)
# The field each gauge shows.
GAUGES = (
    (docs.duration_doc, "duration"),
    (docs.emissions_doc, "emissions"),
    (docs.emissions_rate_doc, "emissions_rate"),
    (docs.cpu_power_doc, "cpu_power"),
    (docs.gpu_power_doc, "gpu_power"),
    (docs.ram_power_doc, "ram_power"),
    (docs.cpu_energy_doc, "cpu_energy"),
    (docs.gpu_energy_doc, "gpu_energy"),
    (docs.ram_energy_doc, "ram_energy"),
    (docs.energy_consumed_doc, "energy_consumed"),
)

_metrics: dict[str, Any] = {}


def _registry() -> dict[str, Any]:
    """The metrics, in a registry of their own, made once per process."""
    if not _metrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        registry = CollectorRegistry()
        gauges = {
            field: Gauge(doc.name, doc.description, LABELS, registry=registry)
            for doc, field in GAUGES
        }
        total_doc = docs.energy_consumed_total_doc
        total = Counter(total_doc.name, total_doc.description, LABELS, registry=registry)
        _metrics.update(registry=registry, gauges=gauges, total=total)
    return _metrics


class PrometheusOutput(BaseOutput):
    """Pushes to the gateway at `prometheus_url` (default localhost:9091) under `job_name` at
    each flush, stop and live update; deletes the job's metrics at stop()."""

    def __init__(self, prometheus_url: str, job_name: str = "codecarbon") -> None:
        self.prometheus_url = prometheus_url
        self.job_name = job_name
        self._ready = False
        try:
            _registry()
            self._ready = True
        except ImportError:
            logger.error(
                "PrometheusOutput needs prometheus-client: pip install prometheus-client. "
                "Nothing is pushed to the gateway; the run goes on"
            )

    def _auth_handler(
        self, url: str, method: str, timeout: float | None, headers: Any, data: bytes
    ) -> Any:
        from prometheus_client.exposition import basic_auth_handler

        return basic_auth_handler(
            url,
            method,
            timeout,
            headers,
            data,
            os.getenv("PROMETHEUS_USERNAME"),
            os.getenv("PROMETHEUS_PASSWORD"),
        )

    def add_emission(self, carbon_emission: dict[str, Any]) -> None:
        """Sets the gauges from one record of the run (the part since the last push) and
        pushes them."""
        from prometheus_client import push_to_gateway

        metrics = _registry()
        labels = dict.fromkeys(LABELS, "")
        labels["project_name"] = carbon_emission["project_name"]
        for field, gauge in metrics["gauges"].items():
            gauge.labels(**labels).set(carbon_emission[field] or 0.0)
        metrics["total"].labels(**labels).inc(carbon_emission["energy_consumed"] or 0.0)
        push_to_gateway(
            self.prometheus_url,
            job=self.job_name,
            registry=metrics["registry"],
            handler=self._auth_handler,
            timeout=10,
        )

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        if not self._ready:
            return
        try:
            self.add_emission(dataclasses.asdict(delta))
        except Exception as e:
            logger.error(
                f"PrometheusOutput could not push to {self.prometheus_url}: {e}; check "
                "prometheus_url and that the Pushgateway is running"
            )

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self.out(total, delta)

    def exit(self) -> None:
        """Deletes the job's metrics from the gateway (Prometheus has read them by now)."""
        if not self._ready:
            return
        try:
            from prometheus_client import delete_from_gateway

            logger.info("Deleting metrics from Prometheus Pushgateway")
            delete_from_gateway(
                self.prometheus_url, job=self.job_name, handler=self._auth_handler, timeout=10
            )
        except Exception as e:
            logger.error(f"PrometheusOutput could not delete the metrics: {e}")
