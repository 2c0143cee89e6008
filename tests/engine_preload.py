"""Imported by the test processes' engine fork server (tests/conftest.py): the diagrams the tests deploy are parsed
there once, so every engine worker forked from it starts with their specs (service.engine.deployment.reparse keeps
them) instead of parsing them again for each test's service."""
from __future__ import annotations

from pathlib import Path

from service.engine.deployment import ModelError, parse_files, reparse

_ROOT = Path(__file__).resolve().parent.parent


def _preload() -> None:
    for directory in (_ROOT / "bpmn", _ROOT / "tests" / "fixtures"):
        tables = {d.name: d.read_bytes() for d in directory.glob("*.dmn")}
        for bpmn in sorted(directory.glob("*.bpmn")):
            try:
                for p in parse_files({bpmn.name: bpmn.read_bytes(), **tables}):
                    reparse(p.key, p.resource_name, p.bpmn_xml, p.dmn_resources)
            except ModelError:
                continue


_preload()
