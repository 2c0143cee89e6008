"""The container image: its HEALTHCHECK is the readiness probe, and it installs pinned versions.
(scripts/container-smoke, run by .ci/run, replays the image's install and start without a container daemon.)"""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from sqlalchemy import text

from service.db.session import make_engine
from tests.support import REPO, Api

DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")


def _healthcheck() -> str:
    joined = DOCKERFILE.replace("\\\n", " ")
    line = next(ln for ln in joined.splitlines() if ln.startswith("HEALTHCHECK"))
    return line.split(" CMD ", 1)[1].strip()


def _probe(api: Api) -> int:
    command = _healthcheck().replace("127.0.0.1:8000", f"127.0.0.1:{api.server.port}")
    assert command.startswith("python -c ")
    code = command.removeprefix("python -c ").strip().strip('"')
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode


def test_the_healthcheck_fails_when_the_database_is_unreachable_or_not_migrated(api: Api) -> None:
    assert "/readyz" in _healthcheck() and "/healthz" not in _healthcheck()
    assert _probe(api) == 0
    ctx = api.server.ctx
    engine, reader = ctx.engine, ctx.read_engine
    try:
        ctx.engine = ctx.read_engine = make_engine("sqlite:////nonexistent-directory/govflow.db")
        assert _probe(api) != 0
    finally:
        ctx.engine, ctx.read_engine = engine, reader
    with engine.begin() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("DELETE FROM alembic_version"))
    try:
        assert _probe(api) != 0
    finally:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": revision})
    assert _probe(api) == 0


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_every_dependency_is_pinned_and_every_install_uses_the_pins() -> None:
    pins = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[_name(name)] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    assert sorted(_name(r) for r in wanted if _name(r) not in pins) == []
    assert "psycopg-binary" in pins  # extras are pinned too
    assert re.search(r"pip install [^\n]*-c constraints\.txt", DOCKERFILE)
    assert "COPY" in DOCKERFILE and "constraints.txt" in DOCKERFILE.split("RUN")[0]
    assert "-c constraints.txt -e '.[test]'" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/container-smoke" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_the_image_keeps_its_data_in_the_volume() -> None:
    assert "GOVFLOW_DATA_DIR=/data" in DOCKERFILE and "VOLUME /data" in DOCKERFILE
    assert "USER govflow" in DOCKERFILE
