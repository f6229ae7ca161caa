"""CodeCarbon's configuration: `.codecarbon.config` files and CODECARBON_* variables.

Layers, strongest first: the tracker's arguments, then the environment (CODECARBON_PROJECT_NAME
sets `project_name`; the prefix is matched in any case), then `.codecarbon.config` in the
working directory, then `.codecarbon.config` in the home directory. Each file is INI with a
`[codecarbon]` section:

    [codecarbon]
    project_name = train
    output_methods = csv,logger
    country_iso_code = FRA

All values read here are strings; the tracker parses each one, and logs an error for a value it
cannot use and goes on without it.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from carbonfast.compat.codecarbon.external.logger import logger

CONFIG_FILE_NAME = ".codecarbon.config"
CONFIG_SECTION = "codecarbon"
_ENV_PREFIX = "codecarbon_"


def clean_env_key(k: str) -> str:
    """CODECARBON_PROJECT_NAME -> project_name."""
    return k.lower().replace(_ENV_PREFIX, "", 1)


def parse_env_config() -> dict[str, dict[str, str]]:
    """The CODECARBON_* variables (any case), by setting name, under the section name."""
    return {
        CONFIG_SECTION: {
            clean_env_key(k): v for k, v in os.environ.items() if k.lower().startswith(_ENV_PREFIX)
        }
    }


def read_config_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `[codecarbon]` section of one file; empty where the file is absent or has no such
    section. A file that cannot be read or parsed is logged as an error and skipped."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        logger.error(
            f"CONFIG - {path} is not a valid config file and is ignored: {e}. Write it as INI "
            f"with a [{CONFIG_SECTION}] section of `key = value` lines."
        )
        return {}
    if not parser.has_section(CONFIG_SECTION):
        return {}
    return dict(parser[CONFIG_SECTION])


def get_hierarchical_config_with_sources() -> tuple[dict[str, str], dict[str, str]]:
    """(settings, where each came from): the home directory's file, then the working
    directory's, then the environment, each overriding the one before."""
    global_path = (Path.home() / CONFIG_FILE_NAME).expanduser().resolve()
    try:
        local_path = (Path.cwd() / CONFIG_FILE_NAME).resolve()
    except FileNotFoundError:  # the working directory was removed
        local_path = None
    config: dict[str, str] = {}
    sources: dict[str, str] = {}
    for path in (global_path, local_path):
        if path is None:
            continue
        for key, value in read_config_file(path).items():
            config[key] = value
            sources[key] = str(path)
    for key, value in parse_env_config()[CONFIG_SECTION].items():
        config[key] = value
        sources[key] = f"CODECARBON_{key.upper()}"
    return config, sources


def log_config_sources(sources: dict[str, str]) -> None:
    """One line naming, for each key, the layer that set it (never the values: they can hold
    API keys)."""
    if sources:
        logger.info(
            "Codecarbon configuration: "
            + ", ".join(f"{key} from {source}" for key, source in sorted(sources.items()))
        )


def get_hierarchical_config() -> dict[str, str]:
    """The settings from files and environment, strongest layer winning; logs their sources."""
    config, sources = get_hierarchical_config_with_sources()
    log_config_sources(sources)
    return config
