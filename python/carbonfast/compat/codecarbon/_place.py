"""Where a tracker's energy is drawn and the carbon settings for it: a forced intensity, a cloud
region or a country given as CodeCarbon takes them, else carbonfast's own settings, else the
world average; and the place as CodeCarbon's reports name it."""

from __future__ import annotations

import dataclasses

from carbonfast.compat.codecarbon.external.logger import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from carbonfast.carbon import Carbon
    from carbonfast.carbon.intensity import Intensity


@dataclasses.dataclass(frozen=True)
class _Place:
    """Where the energy is drawn, as the CSV names it, and its carbon settings."""

    carbon: Carbon
    country_iso_code: str | None = None
    country_name: str | None = None
    region: str | None = None
    cloud_provider: str = ""
    cloud_region: str = ""

    @property
    def on_cloud(self) -> str:
        return "Y" if self.cloud_provider else "N"


# The country_name of a tracker on the world average (no place given, or one without data):
# empty, as CodeCarbon's offline tracker leaves it, and a str as its online one always gives.
_WORLD = ""


def _country_fields(alpha3: str | None, table: dict[str, Any]) -> dict[str, Any]:
    row = table["countries"].get(alpha3) if alpha3 else None
    if row is None:
        return {"country_iso_code": None, "country_name": _WORLD}
    return {"country_iso_code": alpha3, "country_name": row["name"]}


def _resolve_place(
    where: dict[str, Any],
    *,
    electricitymaps_token: str | None,
    forced_intensity: float | None,
    meter_carbon: Carbon,
    no_place_given: Callable[[Intensity], None],
) -> _Place:
    """The place and its intensity: the forced intensity, else the cloud region, else the
    country given; with none of them, carbonfast's own settings (CARBONFAST_COUNTRY, a
    carbonfast.toml), else the world average.

    `where` holds the place settings (country_iso_code, region, cloud_provider,
    cloud_region); `meter_carbon` is the meter's, used where no place is given, and
    `no_place_given` then says so."""
    from carbonfast.carbon import Carbon
    from carbonfast.carbon.intensity import by_cloud, by_country
    from carbonfast.carbon.tables import countries

    settings: dict[str, Any] = {
        "electricitymaps_token": electricitymaps_token or None,
        "electricitymaps_url": "https://api.electricitymap.org/v3",
    }
    if forced_intensity is not None:
        settings["intensity"] = float(forced_intensity)
    fields: dict[str, Any] = {"region": where.get("region")}
    provider, cloud_region = where.get("cloud_provider"), where.get("cloud_region")
    if provider and not cloud_region:
        logger.error(
            "Cloud Region must be provided if cloud provider is set: give cloud_region "
            f"(e.g. cloud_provider={provider!r}, cloud_region='europe-west1')"
        )
    elif provider:
        spec = f"{provider}:{cloud_region}"
        try:
            cloud = by_cloud(spec)
        except ValueError as e:
            logger.error(
                f"Cloud Provider/Region {provider} {cloud_region} not found in cloud "
                f"emissions data: {e}"
            )
        else:
            settings["cloud"] = spec
            fields.update(cloud_provider=str(provider), cloud_region=str(cloud_region))
            fields.update(_country_fields(cloud.country, countries()))
    code = where.get("country_iso_code")
    if code and "cloud" not in settings:
        try:
            country = by_country(str(code))
        except ValueError as e:
            logger.error(f"Does not support country with ISO code {code}: {e}")
            logger.warning(f"We do not have data for {code}, using world average.")
            fields.update(country_iso_code=str(code), country_name=_WORLD)
        else:
            settings["country"] = str(code)
            fields.update(_country_fields(country.country, countries()))
    place_given = any(k in settings for k in ("intensity", "cloud", "country")) or bool(code)
    # The most specific place alone (as CodeCarbon: a forced intensity, else the cloud
    # region, else the country), so that the others are not noted as overridden.
    for weaker in ("country", "cloud"):
        if sum(k in settings for k in ("intensity", "cloud", "country")) > 1:
            settings.pop(weaker, None)
    carbon = Carbon(settings) if place_given else meter_carbon
    if not place_given:
        table = carbon.table
        fields.update(_country_fields(table.country, countries()))
        no_place_given(table)
    return _Place(carbon=carbon, **fields)
