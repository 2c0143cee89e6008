"""The access line `govflow serve` writes is uvicorn's, character for character (service/serving.py:
AccessFormatter writes it without uvicorn's copy of each record)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter as UvicornAccessFormatter

from service import serving
from service.config import Settings

FMT = LOGGING_CONFIG["formatters"]["access"]["fmt"]


def _record(status: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", level, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "POST", "/api/v1/tasks/x/complete?a=%E4%B8%80", "1.1", status), None)


@pytest.mark.parametrize("status", [200, 201, 204, 404, 408, 409, 422, 499, 503, 599, 100])
@pytest.mark.parametrize("colours", [False, True])
def test_the_line_is_uvicorns(status: int, colours: bool) -> None:
    ours, theirs = serving.AccessFormatter(FMT, use_colors=colours), UvicornAccessFormatter(FMT, use_colors=colours)
    for level in (logging.INFO, logging.WARNING):
        assert ours.format(_record(status, level)) == theirs.format(_record(status, level))


def test_another_format_is_uvicorns_too() -> None:
    fmt = "%(levelprefix)s|%(status_code)s|%(request_line)s|%(client_addr)s"
    ours, theirs = serving.AccessFormatter(fmt, use_colors=False), UvicornAccessFormatter(fmt, use_colors=False)
    assert ours.format(_record(404)) == theirs.format(_record(404)) == (
        'INFO:    |404 Not Found|POST /api/v1/tasks/x/complete?a=%E4%B8%80 HTTP/1.1|127.0.0.1:5000')


def test_the_service_logs_its_access_lines_with_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_secret="x" * 40)
    config = serving.config(object(), settings, "127.0.0.1", 0)
    assert config.log_config["formatters"]["access"]["()"] == "service.serving.AccessFormatter"  # type: ignore[index]
    assert config.log_config["formatters"]["access"]["fmt"] == FMT  # type: ignore[index]
    assert config.log_config["formatters"]["default"] == LOGGING_CONFIG["formatters"]["default"]  # type: ignore[index]
