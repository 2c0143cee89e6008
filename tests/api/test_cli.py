"""The govflow command: one data directory whatever the current directory, commands that refuse to work on a
data directory that does not exist instead of creating a second one, help on every option, clear errors."""
from __future__ import annotations

import argparse
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.cli import build_parser, main
from service.clock import FrozenClock
from service.config import Settings, default_data_dir
from tests.support import _TLS, FIXTURES, T0, Api, Server, make_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home directory, no GOVFLOW_* setting, and a current directory that is not the repository."""
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith("GOVFLOW_") or name == "XDG_DATA_HOME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return home


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_default_data_directory_is_absolute_and_the_same_from_every_directory(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    expected = home / ".local" / "share" / "govflow"
    assert default_data_dir() == expected and Settings().data_dir == expected
    code, out, _ = _run(capsys, "migrate")
    assert code == 0 and str(expected / "govflow.db") in out
    assert stat.S_IMODE(expected.stat().st_mode) == 0o700
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    code, out, _ = _run(capsys, "migrate")
    assert code == 0 and str(expected / "govflow.db") in out
    assert not (tmp_path / "elsewhere" / "data").exists() and not (other / "data").exists()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings().data_dir == tmp_path / "xdg" / "govflow"
    monkeypatch.setenv("GOVFLOW_DATA_DIR", "relative/dir")
    assert Settings().data_dir == other / "relative" / "dir"  # made absolute once, where it was set


def test_token_apikey_and_audit_refuse_a_data_directory_that_does_not_exist(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = home / ".local" / "share" / "govflow"
    for argv in (["token", "bob", "--groups", "applicant"], ["apikey", "create", "oa", "--groups", "applicant"],
                 ["apikey", "list"], ["audit", "verify"]):
        code, out, err = _run(capsys, *argv)
        assert code == 2, argv
        assert out == "" and str(data_dir) in err and "GOVFLOW_DATA_DIR" in err, err
    assert not data_dir.exists()


def test_a_token_minted_on_the_services_data_directory_is_accepted(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        database_url: str | None) -> None:
    # the service generates the secret in its data directory on first start; the CLI reads the same one
    settings = make_settings(tmp_path, database_url, FIXTURES, jwt_secret=None)
    server = Server(settings, FrozenClock(T0))
    server.start()
    try:
        monkeypatch.setenv("GOVFLOW_DATA_DIR", str(settings.data_dir))
        code, out, err = _run(capsys, "token", "wang.fang", "--groups", "data_bureau,applicant")
        assert code == 0, err
        token = out.strip()
        with httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {token}"},
                          verify=_TLS) as client:
            assert client.get("/tasks").status_code == 200
    finally:
        server.stop()
    assert stat.S_IMODE(settings.secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700


def test_the_secret_is_created_once_even_by_concurrent_starts(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    secrets: list[str] = []
    threads = [threading.Thread(target=lambda: secrets.append(settings.resolved_jwt_secret())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(secrets)) == 1 and len(secrets[0]) > 40
    assert sorted(p.name for p in settings.data_dir.iterdir()) == ["jwt-secret"]  # no temporary file left


def test_every_option_has_help() -> None:
    def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    missing = [(p.prog, a.dest) for p in parsers(build_parser()) for a in p._actions
               if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert missing == []
    text = build_parser().format_help()
    assert "GOVFLOW_DATA_DIR" in text


def test_token_errors_name_the_mistake(home: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GOVFLOW_JWT_SECRET", "s" * 40)
    code, _, err = _run(capsys, "token", "bob", "--groups", "applicant", "--hours", "0")
    assert code == 2 and "at least 1 hour" in err
    code, _, err = _run(capsys, "token", "bob", "--groups", "applicant", "--hours", "two")
    assert code == 2 and "whole number" in err
    code, out, err = _run(capsys, "token", "bob")
    assert code == 2 and out == "" and "--groups" in err and "comma-separated" in err
    assert _run(capsys, "token", "bob", "--no-groups")[0] == 0
    assert _run(capsys, "token", "root", "--admin")[0] == 0
    code, out, _ = _run(capsys, "token", "bob", "--groups", "applicant", "--hours", "1")
    assert code == 0 and out.count(".") == 2  # only the token is printed


def test_deploy_errors_name_the_mistake(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "deploy", str(tmp_path / "nonexistent"))
    assert code == 2 and "is not a directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "deploy", str(tmp_path / "empty"))
    assert code == 2 and "no .bpmn or .dmn files" in err
    code, out, err = _run(capsys, "deploy", str(FIXTURES))
    assert code == 0, err
    assert "deployed review version 1" in out and "govflow.db" in out


@pytest.fixture
def cli_env(api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    """The CLI pointed at the running test service's database."""
    settings = api.server.settings
    monkeypatch.setenv("GOVFLOW_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("GOVFLOW_DATA_DIR", str(settings.data_dir))
    return api


def test_apikey_create_grants_processes(cli_env: Api, capsys: pytest.CaptureFixture[str]) -> None:
    api = cli_env
    code, out, err = _run(capsys, "apikey", "create", "oa-review", "--groups", "applicant", "--processes", "review")
    assert code == 0, err
    key = out.strip()
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="CLI-1", user="li.ming")
    with httpx.Client(base_url=api.server.url + "/api/v1", headers={"X-API-Key": key}, verify=_TLS) as oa:
        assert oa.get(f"/process-instances/{inst['id']}").status_code == 200
    code, out, _ = _run(capsys, "apikey", "list")
    assert "oa-review" in out and "processes=review" in out and "groups=applicant" in out
    code, out, err = _run(capsys, "apikey", "create", "oa-typo", "--processes", "reveiw")
    assert code == 1 and "reveiw" in err and "review" in err


def test_audit_verify_of_an_unknown_instance_exits_2(cli_env: Api, capsys: pytest.CaptureFixture[str]) -> None:
    api = cli_env
    inst = api.start("review", {"project_name": "x", "budget_wan": 10}, business_key="AUD-1")
    code, out, err = _run(capsys, "audit", "verify", "--instance", "does-not-exist")
    assert code == 2 and "does-not-exist" in err and "verified" not in out
    code, out, _ = _run(capsys, "audit", "verify", "--instance", inst["id"])
    assert code == 0 and "verified 1 of 1 instances" in out
    code, out, _ = _run(capsys, "audit", "verify")
    assert code == 0 and "verified 1 of 1 instances" in out


def test_the_service_reports_its_data_directory_database_migration_and_processes(
        tmp_path: Path, database_url: str | None, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, database_url, FIXTURES)
    server = Server(settings, FrozenClock(T0))
    with caplog.at_level(logging.INFO, logger="govflow"):
        server.start()
        server.stop()
    text = caplog.text
    assert f"data directory {settings.data_dir}" in text
    from service.db.migrate import head_revision

    assert f"at migration {head_revision()}" in text
    assert "processes deployed: deadlines v1, parallel_review v1, review v1, wait_a_day v1" in text
    if not database_url:
        assert f"database sqlite:///{settings.data_dir / 'govflow.db'}" in text


def test_a_database_password_is_masked_in_messages(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql://govflow:hunter2@db.internal/govflow")
    assert settings.database_description() == "postgresql://govflow:***@db.internal/govflow"


def test_a_command_closes_its_database_so_the_file_alone_holds_what_it_wrote(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite keeps a transaction's pages in the write-ahead log until a checkpoint copies them into the database
    file; the last connection to close does that and removes the log. A command that left its connections open
    left `govflow deploy`'s new versions in govflow.db-wal only: a copy of govflow.db taken with the service stopped
    (a cold backup, a move to another host) had none of them."""
    import shutil
    import sqlite3

    code, _, err = _run(capsys, "deploy", str(FIXTURES))
    assert code == 0, err
    database = Settings().data_dir / "govflow.db"
    assert not Path(str(database) + "-wal").exists()
    copy = tmp_path / "copy.db"
    shutil.copyfile(database, copy)  # the file alone
    with sqlite3.connect(copy) as connection:
        (count,) = connection.execute("SELECT count(*) FROM process_definition").fetchone()
    assert count > 0
