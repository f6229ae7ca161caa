"""Emissions sent over HTTP: to an endpoint of yours (HTTPOutput, `emissions_endpoint=`), or to
the CodeCarbon API (CodeCarbonAPIOutput, `output_methods=[OutputMethod.API]`).

Requests go through carbonfast._http: each bounded in total time (CodeCarbon's 10 s for an
endpoint, 2 s for the API), never following a redirect (which would carry the API token
elsewhere), only to http:// and https:// URLs. A failure is logged and the run goes on:
nothing here raises into your code.
"""

from __future__ import annotations

import dataclasses
import json
import threading

from carbonfast._http import RedirectRefused
from carbonfast.compat.codecarbon.external.logger import logger
from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput
from carbonfast.compat.codecarbon.output_methods.emissions_data import EmissionsData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_TIMEOUT_S = 10.0
_API_TIMEOUT_S = 2.0


def post_json(
    url: str, payload: dict[str, Any], headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    """POSTs `payload` as JSON; (status, body), within `timeout` seconds in all. Raises
    OSError (urllib's URLError among them) on failure, RedirectRefused on a redirect."""
    from carbonfast._http import request

    answer = request(
        url,
        method="POST",
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout_s=timeout,
    )
    return answer.status, answer.body


def _refused(what: str, e: RedirectRefused) -> None:
    logger.warning(
        f"{what}: {e.url} answered with a redirect to {e.location}, which is not followed "
        "(it would carry the request and its token there); the emissions were not sent. "
        "Give the final URL."
    )


class HTTPOutput(BaseOutput):
    """POSTs the run's data as JSON (with "user": your login name) to `endpoint_url` at each
    flush() and stop(); a reply other than 201 is logged as a warning."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url: str = endpoint_url

    def out(self, total: EmissionsData, delta: EmissionsData | None) -> None:
        import getpass

        try:
            payload = dataclasses.asdict(total)
            try:
                payload["user"] = getpass.getuser()
            except (KeyError, OSError):
                payload["user"] = None
            status, _ = post_json(self.endpoint_url, payload, timeout=_TIMEOUT_S)
            if status != 201:
                logger.warning(
                    f"HTTP Output returned an unexpected status code: {status} from "
                    f"{self.endpoint_url} (expected 201)"
                )
        except RedirectRefused as e:
            _refused("HTTP Output (emissions_endpoint)", e)
        except Exception as e:
            logger.error(
                f"HTTP Output could not send the emissions to {self.endpoint_url}: "
                f"{getattr(e, 'reason', e)}; check emissions_endpoint and that the server is "
                "reachable"
            )


class CodeCarbonAPIOutput(BaseOutput):
    """Sends the run to the CodeCarbon API (`api_endpoint`, `experiment_id`, `api_key`): a run
    is created at the first send, then each flush, stop and live update adds the part of the
    emissions since the last one. Where the API cannot be reached (offline), each attempt is
    logged as an error and the run goes on."""

    def __init__(
        self, endpoint_url: str, experiment_id: str, api_key: str | None, conf: dict[str, Any]
    ) -> None:
        self.endpoint_url: str = endpoint_url.rstrip("/")
        self.experiment_id = experiment_id
        self.api_key = api_key
        self.conf = conf
        self.run_id: str | None = None
        # One send at a time, so that sends at once (a flush beside a live update) create
        # one run, not one each.
        self._lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        return {"x-api-token": self.api_key} if self.api_key else {}

    def _create_run(self) -> None:
        from datetime import datetime, timezone

        conf = self.conf
        payload = {
            "timestamp": datetime.now(timezone.utc).astimezone().isoformat(),
            "experiment_id": self.experiment_id,
            **{
                key: conf.get(key)
                for key in (
                    "os",
                    "python_version",
                    "codecarbon_version",
                    "cpu_count",
                    "cpu_model",
                    "gpu_count",
                    "gpu_model",
                    "longitude",
                    "latitude",
                    "region",
                    "provider",
                    "ram_total_size",
                    "tracking_mode",
                )
            },
        }
        status, body = post_json(
            self.endpoint_url + "/runs", payload, self._headers(), timeout=_API_TIMEOUT_S
        )
        if status != 201:
            raise OSError(f"creating the run answered {status}: {body[:200]!r}")
        run_id = json.loads(body)["id"]
        if not isinstance(run_id, str) or not run_id:
            raise OSError(f"creating the run answered no run id: {body[:200]!r}")
        self.run_id = run_id
        logger.info(
            f"ApiClient Successfully registered your run on the API. Run ID: {self.run_id}, "
            f"Experiment ID: {self.experiment_id}"
        )

    def _emit(self, delta: EmissionsData) -> None:
        with self._lock:
            self._send(delta)

    def _send(self, delta: EmissionsData) -> None:
        from datetime import datetime, timezone

        try:
            if self.run_id is None:
                self._create_run()
            if delta.duration < 1:
                logger.warning(
                    "ApiClient : emissions not sent because of a duration smaller than 1."
                )
                return
            payload = {
                "timestamp": datetime.now(timezone.utc).astimezone().isoformat(),
                "run_id": self.run_id,
                "duration": int(delta.duration),
                "emissions_sum": delta.emissions,
                "emissions_rate": delta.emissions_rate,
                "cpu_power": delta.cpu_power,
                "gpu_power": delta.gpu_power,
                "ram_power": delta.ram_power,
                "cpu_energy": delta.cpu_energy,
                "gpu_energy": delta.gpu_energy,
                "ram_energy": delta.ram_energy,
                "energy_consumed": delta.energy_consumed,
                "cpu_utilization_percent": delta.cpu_utilization_percent,
                "gpu_utilization_percent": delta.gpu_utilization_percent,
                "ram_utilization_percent": delta.ram_utilization_percent,
                "wue": delta.wue,
            }
            status, body = post_json(
                self.endpoint_url + "/emissions", payload, self._headers(), timeout=_API_TIMEOUT_S
            )
            if status != 201:
                raise OSError(f"adding the emissions answered {status}: {body[:200]!r}")
        except RedirectRefused as e:
            _refused(f"CodeCarbon API ({self.endpoint_url})", e)
        except Exception as e:
            logger.error(
                f"CodeCarbon API ({self.endpoint_url}): {getattr(e, 'reason', e)}; the "
                "emissions were not sent. Check api_endpoint, api_key and experiment_id, and "
                "the network; the run goes on"
            )

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._emit(delta)

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._emit(delta)
