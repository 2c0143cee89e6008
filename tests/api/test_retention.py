"""History retention: ended instances older than GOVFLOW_HISTORY_RETENTION_DAYS are removed by the worker, each
after its audit chain was exported and the export verified; `govflow audit export` writes the same verifiable
JSON lines, and `govflow audit verify --file` checks them."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from service.cli import main
from service.services.retention import Retention, purge, verify_lines
from tests.operations_support import history, service
from tests.support import T0, Api


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    with service(tmp_path, database_url, history_retention_days=30,
                 history_export_dir=tmp_path / "exports") as a:
        yield a


def cancelled(api: Api, bk: str) -> str:
    iid = str(api.start("returns", {"project_name": bk}, business_key=bk)["id"])
    api.complete(iid, "declare", {"plan_ref": bk})
    r = api.admin.post(f"/process-instances/{iid}/cancel", json={"reason": "撤销申报"})
    assert r.status_code == 200, r.text
    return iid


def test_ended_instances_are_removed_after_the_retention_and_their_audit_trail_is_kept(
        api: Api, tmp_path: Path) -> None:
    ctx = api.server.ctx
    old = cancelled(api, "RT-OLD")  # ended at T0
    events = history(api, old)
    api.clock.advance(timedelta(hours=1))
    recent = cancelled(api, "RT-RECENT")  # ended at T0 + 1 h
    running = str(api.start("returns", {"project_name": "x"}, business_key="RT-RUN")["id"])

    # exactly 30 days after the first ended: not older than the retention yet
    api.clock.set(T0 + timedelta(days=30))
    assert purge(ctx) == []
    # a moment later it is; the other one (ended an hour later) is not, nor is the running one
    api.clock.set(T0 + timedelta(days=30, seconds=1))
    assert purge(ctx) == [old]
    assert api.admin.get(f"/process-instances/{old}").status_code == 404
    assert api.admin.get(f"/process-instances/{old}/history").status_code == 404
    assert api.admin.get("/tasks", params={"process_instance_id": old, "status": "completed"}).json()["items"] == []
    for iid in (recent, running):
        assert api.admin.get(f"/process-instances/{iid}").status_code == 200
        history(api, iid)

    # what was removed was kept: the chain, verifiable without the database
    export = tmp_path / "exports" / f"{old}.jsonl"
    lines = export.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["action"] for line in lines] == [e["action"] for e in events]
    assert [json.loads(line)["hash"] for line in lines] == [e["hash"] for e in events]
    [check] = verify_lines(lines)
    assert check.instance_id == old and check.result.verified and check.events == len(events)

    api.clock.set(T0 + timedelta(days=30, hours=1, seconds=1))
    assert purge(ctx) == [recent]
    assert purge(ctx) == []


def test_without_a_retention_nothing_is_removed(tmp_path: Path, database_url: str | None) -> None:
    with service(tmp_path, database_url) as api:
        iid = cancelled(api, "RT-KEEP")
        api.clock.set(T0 + timedelta(days=3650))
        assert purge(api.server.ctx) == []
        assert api.admin.get(f"/process-instances/{iid}").status_code == 200


def test_the_worker_applies_the_retention(api: Api, tmp_path: Path) -> None:
    iid = cancelled(api, "RT-WORKER")
    api.clock.set(T0 + timedelta(days=31))
    worker = Retention(api.server.ctx)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while api.admin.get(f"/process-instances/{iid}").status_code != 404:
            assert time.monotonic() < deadline, "the worker did not remove the instance"
            time.sleep(0.05)
    finally:
        worker.stop()
    assert (tmp_path / "exports" / f"{iid}.jsonl").is_file()


def test_audit_export_and_verify_of_an_export(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    settings = api.server.settings
    monkeypatch.setenv("GOVFLOW_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("GOVFLOW_DATA_DIR", str(settings.data_dir))
    first = cancelled(api, "EX-1")
    second = str(api.start("returns", {"project_name": "x"}, business_key="EX-2")["id"])
    out = tmp_path / "one.jsonl"
    assert main(["audit", "export", "--instance", first, "--out", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(history(api, first))
    capsys.readouterr()
    assert main(["audit", "export"]) == 0
    everything = capsys.readouterr().out.splitlines()
    assert {json.loads(line)["instance_id"] for line in everything} == {first, second}
    whole = tmp_path / "all.jsonl"
    whole.write_text("\n".join(everything) + "\n", encoding="utf-8")
    assert main(["audit", "verify", "--file", str(whole)]) == 0
    assert "verified 2 of 2 instances" in capsys.readouterr().out

    # an edited event is found
    edited = [json.loads(line) for line in everything]
    edited[1]["actor"] = "someone.else"
    whole.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in edited) + "\n", encoding="utf-8")
    assert main(["audit", "verify", "--file", str(whole)]) == 1
    report = capsys.readouterr().out
    assert "TAMPERED at seq 2" in report and "1 failed" in report
    # a missing event too: one in the middle of a chain, and the last one of a chain (the chain still links up,
    # but each line names where the instance's chain ended)
    firsts = [i for i, line in enumerate(everything) if json.loads(line)["instance_id"] == first]
    assert len(firsts) >= 3
    for gone in (firsts[1], firsts[-1]):
        whole.write_text("\n".join(everything[:gone] + everything[gone + 1:]) + "\n", encoding="utf-8")
        assert main(["audit", "verify", "--file", str(whole)]) == 1
        assert "1 failed" in capsys.readouterr().out
    assert main(["audit", "verify", "--file", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["audit", "export", "--instance", "no-such-instance"]) == 2
