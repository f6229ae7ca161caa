"""A config file another user could have written is not obeyed (git's rule since
CVE-2022-24765): its library is not loaded, its history not written, its URL not called."""

from __future__ import annotations

import http.server
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from carbonfast import config

CLI = [sys.executable, "-m", "carbonfast.cli"]
NOBODY = 65534

EVIL_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(getenv("PLANTED_MARKER"), "w");
    if (f) { fputs("ran\n", f); fclose(f); }
}
"""


def evil_library(where: Path) -> Path:
    source = where / "evil.c"
    source.write_text(EVIL_C)
    out = where / "evil.so"
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-o", str(out), str(source)])
    return out


class _Listener(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"carbonIntensity": 1}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    seen: ClassVar[list[str]] = []
    handler = type("Handler", (_Listener,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/steal", seen
    server.shutdown()


def plant(directory: Path, library: Path, url: str, *, owner: int | None) -> Path:
    """A sticky, world-writable directory (as /tmp is) holding a stranger's carbonfast.toml."""
    directory.mkdir()
    directory.chmod(0o1777)
    planted = directory / "carbonfast.toml"
    planted.write_text(
        f'nvml_library = "{library}"\n'
        f'history = "{directory}/stolen.sqlite"\n'
        f'electricitymaps_url = "{url}"\n'
        'zone = "FR"\n'
        "gpu = true\n"
    )
    if owner is not None:
        os.chown(planted, owner, owner)
    return planted


def run_in(directory: Path, tmp_path: Path, marker: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CARBONFAST_") or k.endswith(("_ROOT", "MSR_ROOT"))
    }
    env.update(
        PLANTED_MARKER=str(marker),
        CARBONFAST_ELECTRICITYMAPS_TOKEN="secret-token",
        CARBONFAST_POWERCAP_ROOT=str(tmp_path / "no-rapl"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        HOME=str(tmp_path / "home"),
    )
    return subprocess.run(
        [*CLI, "run", "--", "true"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("below", [False, True], ids=["in-the-directory", "in-a-project-below"])
def test_a_planted_config_in_a_shared_directory_is_not_obeyed(
    tmp_path: Path, listener: tuple[str, list[str]], below: bool
) -> None:
    url, seen = listener
    shared = tmp_path / "shared"
    owner = NOBODY if os.geteuid() == 0 else None
    planted = plant(shared, evil_library(tmp_path), url, owner=owner)
    where = shared
    if below:
        where = shared / "project" / "src"
        where.mkdir(parents=True)
    marker = tmp_path / "constructor-ran"
    done = run_in(where, tmp_path, marker)
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), "the planted library was loaded"
    assert not (shared / "stolen.sqlite").exists()
    assert not (shared / ".carbonfast").exists()
    assert seen == [], "the token's request went to the planted URL"
    assert f"{planted} is not obeyed" in done.stderr
    assert "CARBONFAST_CONFIG=" in done.stderr
    # The history went to the user's own data directory instead.
    assert (tmp_path / "data" / "carbonfast" / "history.sqlite").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_owned_by_another_user_is_not_obeyed_even_in_a_private_directory(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    planted = project / "carbonfast.toml"
    planted.write_text('country = "FR"\n')
    os.chown(planted, NOBODY, NOBODY)
    assert config.untrusted(planted) == f"it is owned by uid {NOBODY}, another user"
    project.chmod(0o755)
    os.chown(planted, 0, 0)
    assert config.untrusted(planted) is None


def test_own_file_in_a_world_writable_directory_and_a_world_writable_file(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    own = project / "carbonfast.toml"
    own.write_text('country = "FR"\n')
    assert config.untrusted(own) is None
    project.chmod(0o777)
    assert "can be written by every user" in (config.untrusted(own) or "")
    project.chmod(0o755)
    own.chmod(own.stat().st_mode | stat.S_IWOTH)
    assert config.untrusted(own) == "it can be written by every user"


def test_a_symlink_planted_in_a_shared_directory_is_judged_by_where_it_sits(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "carbonfast.toml").write_text('country = "FR"\n')
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    link = shared / "carbonfast.toml"
    link.symlink_to(mine / "carbonfast.toml")
    assert "can be written by every user" in (config.untrusted(link) or "")


def test_an_explicitly_named_file_is_obeyed_and_a_found_one_warned_about_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "carbonfast.toml"
    planted.write_text('country = "FR"\n')
    monkeypatch.chdir(shared)
    monkeypatch.delenv("CARBONFAST_CONFIG", raising=False)
    monkeypatch.delenv("CARBONFAST_COUNTRY", raising=False)
    monkeypatch.setattr(config, "_file_cache", {})
    monkeypatch.setattr(config, "_warned", set())
    with pytest.warns(config.UntrustedConfigWarning, match="is not obeyed"):
        assert config.resolve(("country",), {})["country"] is None
    assert config.project_directory() is None
    monkeypatch.setenv("CARBONFAST_CONFIG", str(planted))
    assert config.resolve(("country",), {})["country"] == "FR"
