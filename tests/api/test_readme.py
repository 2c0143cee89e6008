"""The README's walkthrough, run as written: its shell blocks against a `govflow serve` on a free port with a
fresh data directory, as a newcomer on a clean clone would; every HTTP answer is checked."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import _TLS, REPO, free_port

# every curl of the walkthrough is recorded (arguments, status, body) and its answer passed on unchanged
PRELUDE = r"""set -euo pipefail
curl() {
  local n status
  n=$(printf '%03d' "$(find "$CURL_LOG" -name '*.status' | wc -l)")
  printf '%s\n' "$@" > "$CURL_LOG/$n.args"
  status=$(command curl --silent --show-error --output "$CURL_LOG/$n.body" --write-out '%{http_code}' "$@")
  printf '%s' "$status" > "$CURL_LOG/$n.status"
  cat "$CURL_LOG/$n.body"
}
"""


def walkthrough() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## A first walk through the API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 2
    return "\n".join(blocks)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`govflow serve` with a new data directory, and the environment the walkthrough's shell gets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env["GOVFLOW_DATA_DIR"] = str(tmp_path / "data")
    govflow = Path(sys.executable).parent / "govflow"
    assert govflow.exists(), "the test runs from the project's venv"
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen([str(govflow), "serve", "--port", str(port)], env=env, cwd=tmp_path,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                # and its own log says it started: another test's server may have taken the port meanwhile
                if (httpx.get(url + "/readyz", timeout=5, verify=_TLS).status_code == 200
                        and "Application startup complete" in (tmp_path / "serve.log").read_text(errors="replace")):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "govflow serve did not become ready"
            time.sleep(0.3)
        yield url, env, tmp_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _ok(status: int) -> Callable[[int, Any], bool]:
    return lambda code, _body: code == status


def _next(*elements: str) -> Callable[[int, Any], bool]:
    return lambda code, body: code == 200 and [t["element_id"] for t in body["next_tasks"]] == list(elements)


def test_the_readme_walkthrough_runs_as_written(service: tuple[str, dict[str, str], Path]) -> None:
    url, env, tmp_path = service
    # the README's commands call .venv/bin/govflow from the repository; here, the venv running the tests
    work = tmp_path / "clone"
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "govflow").symlink_to(Path(sys.executable).parent / "govflow")
    calls = tmp_path / "calls"
    calls.mkdir()
    script = walkthrough()
    assert "API=http://127.0.0.1:8000/api/v1" in script
    script = script.replace("http://127.0.0.1:8000", url)
    (tmp_path / "walkthrough.sh").write_text(PRELUDE + script, encoding="utf-8")
    run = subprocess.run(["bash", str(tmp_path / "walkthrough.sh")], cwd=work, env={**env, "CURL_LOG": str(calls)},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    answers = []
    for status_file in sorted(calls.glob("*.status")):
        body_text = status_file.with_suffix(".body").read_text(encoding="utf-8")
        args = status_file.with_suffix(".args").read_text(encoding="utf-8").split("\n")
        answers.append((int(status_file.read_text()), json.loads(body_text) if body_text else None, args))

    def is_definitions(code: int, body: Any) -> bool:
        return code == 200 and {d["key"] for d in body} == {"hangzhou", "qufu", "wuhan", "wuxing", "yulin"}

    def is_hangzhou(code: int, body: Any) -> bool:
        groups = {g["name"] for g in body["candidate_groups"]}
        return code == 200 and {"third_party", "expert_panel", "finance_bureau"} <= groups and \
            "contract_signed" in {m["name"] for m in body["messages"]} and bool(body["start_form"])

    def is_groups(code: int, body: Any) -> bool:
        return code == 200 and "third_party" in {g["name"] for g in body}

    def started_by(user: str) -> Callable[[int, Any], bool]:
        return lambda code, body: code == 201 and body["started_by"] == user and body["status"] == "running"

    def inbox(element: str) -> Callable[[int, Any], bool]:
        return lambda code, body: code == 200 and [t["element_id"] for t in body["items"]] == [element]

    def found_by_business_key(code: int, body: Any) -> bool:
        return code == 200 and [(i["business_key"], i["started_by"]) for i in body["items"]] == [
            ("HZ-2026-0042", "li.ming")]

    def waits_for_contract(code: int, body: Any) -> bool:
        [item] = body["items"]
        waiting = {(w["kind"], w["name"]) for w in item["waiting_for"]}
        signed_on = [f for w in item["waiting_for"] if w["name"] == "contract_signed" for f in w["payload"] or []
                     if f["id"] == "signed_on"]
        return code == 200 and ("message", "contract_signed") in waiting and item["open_tasks"] == [] \
            and bool(signed_on) and signed_on[0]["required"]

    def record(code: int, body: Any) -> bool:
        return code == 200 and body["status"] == "completed" and body["submitted"] == {"decision": "pass"} \
            and body["comment"] == "材料齐全，同意提交专家评审" and body["completed_by"] == "wang.fang"

    def task_records(code: int, body: Any) -> bool:
        first = body["items"][0]
        return code == 200 and first["element_id"] == "prereview" and first["comment"] == "材料齐全，同意提交专家评审" \
            and [t["status"] for t in body["items"]].count("open") == 0

    expected: list[tuple[str, Callable[[int, Any], bool]]] = [
        ("list definitions", is_definitions),
        ("read hangzhou", is_hangzhou),
        ("list groups", is_groups),
        ("clerk starts HZ-2026-0042", started_by("li.ming")),
        ("pre-review inbox", inbox("prereview")),
        ("pre-review inbox for the id", inbox("prereview")),
        ("read the task", lambda code, body: code == 200 and "decision" in {f["id"] for f in body["form"]}),
        ("claim", lambda code, body: code == 200 and body["assignee"] == "wang.fang"),
        ("complete pre-review", _next("expert_review")),
        ("the pre-review's record", record),
        ("expert inbox", inbox("expert_review")),
        ("complete expert review", _next("budget_review")),
        ("data bureau inbox", inbox("budget_review")),
        ("complete budget review", _next("lg_approval")),
        ("leading group inbox", inbox("lg_approval")),
        ("complete approval", _next()),
        ("OA key reports the NPC vote", _next("arrange_funds")),
        ("finance inbox", inbox("arrange_funds")),
        ("arrange funds", _next("file_impl_plan")),
        ("applicant inbox", inbox("file_impl_plan")),
        ("file the plan", _next("procurement")),
        ("applicant inbox", inbox("procurement")),
        ("procurement", _next()),
        ("where the project stands", waits_for_contract),
        ("find the project by its business key", found_by_business_key),
        ("its tasks with their records", task_records),
        ("OA key reports the contract", _next("file_contract")),
        ("OA key starts HZ-2026-0043", started_by("oa-hangzhou")),
    ]
    assert len(answers) == len(expected), [(a[0], a[2][-2:]) for a in answers]
    for (what, check), (code, body, args) in zip(expected, answers, strict=True):
        assert check(code, body), (what, code, body, args)
    log = (tmp_path / "serve.log").read_text()
    assert f"data directory {tmp_path / 'data'}" in log and "processes deployed: hangzhou v1" in log
