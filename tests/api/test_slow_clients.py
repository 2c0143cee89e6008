"""Clients that send slowly, or stop half-way: a request's head and body each have GOVFLOW_REQUEST_READ_TIMEOUT_SECONDS
to arrive (service/serving.py, service/api/middleware.py: BodyLimit), a body that is still coming holds no slot
of the service's, and a stop on SIGTERM waits at most GOVFLOW_SHUTDOWN_TIMEOUT_SECONDS for them."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.middleware import write_share
from service.auth import mint_token
from service.replicas import request_threads
from tests.conftest import served
from tests.support import FIXTURES, SECRET, Api, free_port

START = b"POST /api/v1/process-instances HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
BODY = {"process_key": "review", "variables": {"project_name": "x", "budget_wan": 10}}


def _connect(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def _until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the service sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    answer = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        answer += data
    return answer, time.monotonic() - started


def _problem(answer: bytes) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower(), answer[:300]
    return dict(json.loads(body))


def test_clients_that_stop_half_way_through_a_body_do_not_hold_back_other_changes(patient: Api) -> None:
    """Clients with no credentials that send a start's head and half its body, then wait. The body was read by the
    application inside the service's slots (Admission, WriteLimit): as many such clients as there are slots for
    changes stopped every change of every other client for as long as they kept their connections open, and a
    `govflow serve` did not stop on SIGTERM meanwhile. Expected: with twice that many such clients (some chunked),
    another client starts an instance, claims and completes a task at once; reads are served too."""
    settings = patient.server.settings
    stalled = 2 * write_share(request_threads(settings)) + 2
    with ExitStack() as stack:
        for i in range(stalled):
            framing = b"Content-Length: 1000\r\n\r\n{" if i % 2 else b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
            stack.enter_context(_connect(patient.server.port, START + framing))
        time.sleep(0.3)  # the service has every one of them at its body
        fast = httpx.Client(base_url=f"{patient.server.url}/api/v1", timeout=5, headers={
            "Authorization": f"Bearer {patient.token('oa', ('applicant',))}"})
        stack.callback(fast.close)
        started = time.monotonic()
        r = fast.post("/process-instances", json={**BODY, "business_key": "FAST"})
        assert r.status_code == 201, r.text
        task = r.json()["open_tasks"][0]
        reviewer = patient.as_("wang", "data_bureau")
        assert reviewer.post(f"/tasks/{task['id']}/claim").status_code == 200
        done = reviewer.post(f"/tasks/{task['id']}/complete", json={"variables": {"decision": "pass"}})
        assert done.status_code == 200, done.text
        assert patient.admin.get("/process-instances").status_code == 200
        assert time.monotonic() - started < 4


def test_a_body_that_does_not_arrive_in_time_is_answered_408_and_nothing_is_run(hasty: Api) -> None:
    """A start whose body stops coming, with a Content-Length and chunked: after the read timeout (1 s here) the
    service answers 408 as a problem and closes the connection; nothing is started. A body that comes in time, in
    pieces, is run as usual."""
    token = hasty.token("oa", ("applicant",))
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n"
    for framing in (b"Content-Length: 1000\r\n\r\n{", b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"):
        with _connect(hasty.server.port, START + auth + framing) as sock:
            answer, took = _until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b"connection: close" in answer.lower()
        problem = _problem(answer)
        assert problem["type"] == "/problems/request-timeout" and "1 s" in str(problem["detail"]), problem
        assert 0.9 < took < 5, took
    assert hasty.admin.get("/process-instances").json()["items"] == []
    body = json.dumps({**BODY, "business_key": "IN-TIME"}).encode()
    with _connect(hasty.server.port, START + auth + f"Content-Length: {len(body)}\r\n\r\n".encode()) as sock:
        for i in range(0, len(body), 20):
            sock.sendall(body[i:i + 20])
            time.sleep(0.01)
        answer, _ = _until_closed_or_answered(sock)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]


def _until_closed_or_answered(sock: socket.socket) -> tuple[bytes, float]:
    """One whole answer (its head and its Content-Length of body), or what came before the connection closed."""
    started = time.monotonic()
    answer = b""
    while True:
        head, sep, body = answer.partition(b"\r\n\r\n")
        if sep:
            lengths = [line.split(b":", 1)[1] for line in head.lower().split(b"\r\n")
                       if line.startswith(b"content-length:")]
            if len(body) >= int(lengths[0]) if lengths else True:
                break
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    return answer, time.monotonic() - started


def test_a_body_in_many_pieces_reaches_the_service_whole(patient: Api) -> None:
    """A chunked body of 900 kB in 9,000 pieces (BodyLimit keeps the first 64 KiB in memory and the rest in a
    temporary file): the instance is started with the variable as it was sent, to the byte. One byte more than
    the limit (1 MiB) in pieces is refused with 413 and a closed connection."""
    token = patient.token("oa", ("applicant",))
    text = "".join(chr(0x4E00 + i % 500) for i in range(300_000))  # 900 kB of UTF-8
    body = json.dumps({"process_key": "deadlines", "business_key": "PIECES", "variables": {"notes": text}},
                      ensure_ascii=False).encode()
    with _connect(patient.server.port, START + b"Authorization: Bearer " + token.encode()
                  + b"\r\nTransfer-Encoding: chunked\r\n\r\n") as sock:
        for i in range(0, len(body), 100):
            piece = body[i:i + 100]
            sock.sendall(hex(len(piece))[2:].encode() + b"\r\n" + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        answer, _ = _until_closed_or_answered(sock)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    found = patient.admin.get("/process-instances", params={"business_key": "PIECES"}).json()["items"]
    assert found[0]["variables"]["notes"] == text
    limit = patient.server.settings.max_request_bytes
    with _connect(patient.server.port, START + b"Transfer-Encoding: chunked\r\n\r\n") as sock:
        for size in (limit // 2, limit - limit // 2, 1):
            sock.sendall(hex(size)[2:].encode() + b"\r\n" + b"a" * size + b"\r\n")
        answer, _ = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower(), answer[:300]
    with _connect(patient.server.port, START + b"Transfer-Encoding: chunked\r\n\r\n") as sock:
        for size in (limit // 2, limit - limit // 2):
            sock.sendall(hex(size)[2:].encode() + b"\r\n" + b"a" * size + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        answer, _ = _until_closed_or_answered(sock)
    assert answer.startswith(b"HTTP/1.1 4") and not answer.startswith(b"HTTP/1.1 413"), answer[:300]


def test_a_head_that_does_not_arrive_in_time_ends_the_connection(hasty: Api) -> None:
    """uvicorn waits for a request's head without end: a connection that sends nothing, or half a head, stays
    open for as long as its client likes, and each takes one of the process's file descriptors. Expected (1 s
    here): a connection that sends nothing is closed; half a head is answered 408 and closed; on a kept-alive
    connection the deadline starts again after each answer, and a head that comes in time in pieces is served."""
    port = hasty.server.port
    with _connect(port) as sock:
        answer, took = _until_closed(sock)
    assert answer == b"" and 0.9 < took < 5, (answer, took)
    with _connect(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") as sock:
        answer, took = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408") and 0.8 < took < 5, (answer[:200], took)
    assert _problem(answer)["type"] == "/problems/request-timeout"
    with _connect(port) as sock:
        for _ in range(3):  # kept alive: three requests, each head sent in pieces within its deadline
            for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
                time.sleep(0.1)
                sock.sendall(piece)
            answer, _ = _until_closed_or_answered(sock)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            time.sleep(0.2)  # 0.5 s a request: three are more than one deadline, each less than one
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        rest, took = _until_closed(sock)
    assert b"HTTP/1.1 408" in rest and took < 5, rest[:300]


def test_a_slow_but_steady_body_is_read_and_a_trickle_is_cut_off(hasty: Api) -> None:
    """The body's deadline is a pace, not a fixed time from the head: with 1 s here, a body that keeps coming at
    about 3 KB/s for 2 s is read and run (a 10 MiB deployment at 250 KB/s took 40 s and was answered 408 at 30 s
    when the whole body had 30 s); one that sends a byte every 0.3 s, never pausing a whole second but far below
    1 KB/s, is answered 408 soon after its first second."""
    token = hasty.token("oa", ("applicant",))
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n"
    body = json.dumps({"process_key": "deadlines", "business_key": "STEADY", "variables": {"notes": "n" * 6000}}
                      ).encode()
    with _connect(hasty.server.port, START + auth + f"Content-Length: {len(body)}\r\n\r\n".encode()) as sock:
        started = time.monotonic()
        for i in range(0, len(body), 300):
            sock.sendall(body[i:i + 300])
            time.sleep(0.1)
        took = time.monotonic() - started
        answer, _ = _until_closed_or_answered(sock)
    assert took > 1.5 and answer.startswith(b"HTTP/1.1 201"), (took, answer[:300])
    with _connect(hasty.server.port, START + auth + b"Content-Length: 100\r\n\r\n") as sock:
        started = time.monotonic()
        answer = b""
        for _ in range(40):
            try:
                sock.sendall(b"{")
            except OSError:
                break
            sock.settimeout(0.3)
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(65536)
                if answer:
                    break
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert 0.9 < took < 4, took


def test_bodies_being_read_hold_at_most_a_budget_and_give_it_back(tmp_path: Path, database_url: str | None) -> None:
    """What all bodies being read hold together is bounded (eight times the largest body limit): 1,000 clients
    that each sent all but a byte of 1 MiB held 1 GB of memory and temporary files. Here the limits are 64 KiB, so
    the budget is 512 KiB: with eight clients stopped after 60 kB each, a ninth body of 60 kB is answered 503 with
    Retry-After (a small one still passes); once they are gone the same body is read and run. Refused bodies
    (too large, 30 of them) give their share back too."""
    with served(tmp_path, database_url, max_request_bytes=65_536, max_deployment_bytes=65_536) as api:
        port = api.server.port
        auth = b"Authorization: Bearer " + api.token("oa", ("applicant",)).encode() + b"\r\n"
        body = json.dumps({"process_key": "deadlines", "business_key": "BIG", "variables": {"notes": "n" * 59_000}}
                          ).encode()
        big = START + auth + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        with ExitStack() as stack:
            for _ in range(8):
                sock = stack.enter_context(_connect(port, START + auth + b"Content-Length: 65000\r\n\r\n"))
                sock.sendall(b"a" * 60_000)
            time.sleep(0.3)
            with _connect(port, big) as sock:
                answer, _ = _until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 5" in answer.lower(), answer[:300]
            assert _problem(answer)["type"] == "/problems/busy"
            with _connect(port, START + auth + b"Content-Length: 2\r\n\r\n{}") as sock:
                answer, _ = _until_closed_or_answered(sock)
            assert answer.startswith(b"HTTP/1.1 422"), answer[:300]
        time.sleep(0.3)  # the service notices they are gone
        for _ in range(30):
            with _connect(port, START + auth + b"Transfer-Encoding: chunked\r\n\r\n") as sock:
                with contextlib.suppress(OSError):
                    for _ in range(3):
                        sock.sendall(b"6000\r\n" + b"a" * 0x6000 + b"\r\n")
                answer, _ = _until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        with _connect(port, big) as sock:
            answer, _ = _until_closed_or_answered(sock)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:300]


def test_clients_without_credentials_cannot_hold_back_the_bodies_of_those_with(tmp_path: Path,
                                                                                database_url: str | None) -> None:
    """Bodies are read before a route checks credentials, so clients without any could fill the budget every body
    shares and have every change answered 503 (about 6 minutes per 80 MiB sent, then trickled). Bodies of requests
    without a credential the service accepts have a budget of their own, the default body limit (64 KiB here):
    with it held by one such client, another body without credentials (none, a wrong token, an unknown API key) is
    answered 503, while bodies with a token, with an API key and with a token as the engine REST API's Basic
    password are read and run. A small body (a console login: it has no credential yet) counts against neither.
    Nine such clients held the one budget before (512 KiB here) and every body with credentials was answered 503."""
    with served(tmp_path, database_url, max_request_bytes=65_536, max_deployment_bytes=65_536) as api:
        port = api.server.port
        token = api.token("oa", ("applicant",))
        r = api.admin.post("/api-keys", json={"name": "oa-system", "groups": ["applicant"]})
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        body = json.dumps({"process_key": "deadlines", "variables": {"notes": "n" * 40_000}}).encode()

        def start(credential: bytes) -> bytes:
            with _connect(port, START + credential + f"Content-Length: {len(body)}\r\n\r\n".encode() + body) as s:
                return _until_closed_or_answered(s)[0]

        with ExitStack() as stack:
            for _ in range(9):  # 558 kB: more than the budget of the bodies with credentials too (512 KiB)
                holder = stack.enter_context(_connect(port, START + b"Content-Length: 65000\r\n\r\n"))
                with contextlib.suppress(OSError):
                    holder.sendall(b"a" * 62_000)
            time.sleep(0.3)
            for credential in (b"Authorization: Bearer " + token.encode() + b"\r\n",
                               b"X-API-Key: " + key.encode() + b"\r\n",
                               b"Authorization: Bearer " + key.encode() + b"\r\n"):
                answer = start(credential)
                assert answer.startswith(b"HTTP/1.1 201"), (credential, answer[:300])
            for anonymous in (b"", b"Authorization: Bearer not-a-token\r\n",
                              b"X-API-Key: gfk_aaaaaaaaaaaa_" + b"b" * 40 + b"\r\n",
                              b"Authorization: Basic " + base64.b64encode(b"oa:wrong") + b"\r\n"):
                answer = start(anonymous)
                assert answer.startswith(b"HTTP/1.1 503"), (anonymous, answer[:300])
                assert "without valid credentials" in str(_problem(answer)["detail"])
            deployment = b"--b\r\nContent-Disposition: form-data; name=\"data\"; filename=\"x.bpmn\"\r\n\r\n" + \
                b"<x/>" + b" " * 30_000 + b"\r\n--b--\r\n"
            basic = b"Authorization: Basic " + base64.b64encode(b"oa:" + token.encode()) + b"\r\n"
            with _connect(port, b"POST /engine-rest/deployment/create HTTP/1.1\r\nHost: x\r\n" + basic
                          + b"Content-Type: multipart/form-data; boundary=b\r\n"
                          + f"Content-Length: {len(deployment)}\r\n\r\n".encode() + deployment) as s:
                answer = _until_closed_or_answered(s)[0]
            assert not answer.startswith(b"HTTP/1.1 503"), answer[:300]  # read and refused by the route, not busy
            with _connect(port, b"POST /console/login HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n"
                          + f"Content-Length: {len('credential=' + token)}\r\n\r\ncredential={token}".encode()) as s:
                answer = _until_closed_or_answered(s)[0]
            assert answer.startswith(b"HTTP/1.1 303"), answer[:300]


def test_a_body_sent_almost_whole_and_then_a_byte_now_and_then_is_cut_off(tmp_path: Path,
                                                                          database_url: str | None) -> None:
    """The pace alone let a client that sent most of a body at once and then a byte before each pause ran out keep
    its share of the budget for `timeout + limit / 1 KB/s` (a 10 MiB deployment: nearly 3 hours). A body may take
    no longer than the read timeout plus its limit at 32 KB/s: here 1 s + 4 KiB at 32 KB/s, 1.125 s. Sent 4,000
    of 4,096 bytes at once and then a byte every 0.4 s (no pause of a second, 1 KB/s on average until 4 s), it
    is answered 408 before 2.5 s."""
    with served(tmp_path, database_url, request_read_timeout_seconds=1.0, max_request_bytes=4096,
                max_deployment_bytes=4096) as api:
        with _connect(api.server.port, START + b"Content-Length: 4096\r\n\r\n" + b"a" * 4000) as sock:
            started = time.monotonic()
            answer = b""
            while not answer and time.monotonic() - started < 8:
                sock.settimeout(0.4)
                with contextlib.suppress(TimeoutError):
                    answer = sock.recv(65536)
                with contextlib.suppress(OSError):
                    sock.sendall(b"a")
            took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert took < 2.5, took


def test_refusals_of_slow_and_bad_requests_are_counted_in_the_metrics(hasty: Api) -> None:
    """BodyLimit's refusals were answered outside the metrics, and a head's 408 by the protocol: an attack by
    slow clients did not show in /metrics. Expected (1 s here): a body that stops (408), a URL with a NUL (422)
    and a client that goes away mid-body (499, "client closed request") are counted under the route
    "unmatched"; a head that stops is counted in govflow_http_head_timeouts_total."""
    from prometheus_client import REGISTRY

    def count(status: str) -> float:
        value = REGISTRY.get_sample_value("govflow_http_requests_total",
                                          {"method": "POST", "route": "unmatched", "status": status})
        return value or 0.0

    def head_timeouts() -> float:
        return REGISTRY.get_sample_value("govflow_http_head_timeouts_total") or 0.0

    before = {status: count(status) for status in ("408", "422", "499")}
    heads = head_timeouts()
    port = hasty.server.port
    with _connect(port, START + b"Content-Length: 100\r\n\r\n{") as sock:
        assert _until_closed(sock)[0].startswith(b"HTTP/1.1 408")
    with _connect(port, START.replace(b"process-instances", b"process-instances?business_key=%00")
                  + b"Content-Length: 2\r\n\r\n{}") as sock:
        assert _until_closed_or_answered(sock)[0].startswith(b"HTTP/1.1 422")
    with _connect(port, START + b"Content-Length: 100\r\n\r\n{"):
        time.sleep(0.2)
    with _connect(port, b"POST /api/v1/process-instances HTTP/1.1\r\n") as sock:
        assert _until_closed(sock)[0].startswith(b"HTTP/1.1 408")
    time.sleep(0.3)  # the service notices the client that went away
    assert {status: count(status) - before[status] for status in before} == {"408": 1, "422": 1, "499": 1}
    assert head_timeouts() - heads == 1


def test_a_connection_left_with_an_unread_body_or_half_a_pipelined_head_is_closed(hasty: Api) -> None:
    """Two holes in the deadlines (1 s here): a request with both Content-Length and Transfer-Encoding was
    answered 400 with its body left unread and the connection open, and a client that kept sending that body kept
    it open for good; half a head sent right behind a whole one was closed without its 408. Expected: the first
    closed after its answer; the second answered 200, then 408."""
    with _connect(hasty.server.port, START + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n") as sock:
        answer = b""
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - started < 8:
                sock.sendall(b"1\r\na\r\n")
                sock.settimeout(0.2)
                with contextlib.suppress(TimeoutError):
                    data = sock.recv(65536)
                    if not data:
                        break
                    answer += data
    assert answer.startswith(b"HTTP/1.1 400") and time.monotonic() - started < 5, answer[:300]
    with _connect(hasty.server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n") as sock:
        answer, took = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in answer and took < 5, answer[:400]


@contextlib.contextmanager
def _serve(tmp_path: Path, **settings: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`govflow serve` on a free port with the test fixtures and these GOVFLOW_* settings, once it answers and its
    own log says it started (the port was free when chosen: another test's server may take it meanwhile and answer
    while this one is still importing, as on a fresh clone compiling its modules)."""
    port = free_port()
    env = {**os.environ, "GOVFLOW_DATA_DIR": str(tmp_path / "data"), "GOVFLOW_JWT_SECRET": "s" * 40,
           "GOVFLOW_BPMN_DIR": str(FIXTURES), **{f"GOVFLOW_{k.upper()}": v for k, v in settings.items()}}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "govflow"), "serve", "--port", str(port)],
                                   env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                        and "Application startup complete" in log.read_text(errors="replace")):
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _stopped(process: subprocess.Popen[bytes], log: Path, within: float = 15) -> float:
    started = time.monotonic()
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {within:g} s after the signal:\n" + log.read_text())
    return time.monotonic() - started


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_serve_stops_on_sigterm_while_a_client_never_finishes_its_body(tmp_path: Path) -> None:
    """`govflow serve` on SIGTERM waited for every open request to end: one client that sent half a body kept the
    service running for good (a container's stop then ends in SIGKILL, without the service's shutdown). A request
    whose body is still coming has done nothing yet: it is dropped at once. Expected, with a read timeout of 60 s
    and GOVFLOW_SHUTDOWN_TIMEOUT_SECONDS=30: it stops within a few seconds, its application shutdown run
    ("Application shutdown complete"), the half-body connection closed without an answer."""
    with (_serve(tmp_path, request_read_timeout_seconds="60", shutdown_timeout_seconds="30") as (process, port, log),
          _connect(port, START + b"Content-Length: 1000\r\n\r\n{") as sock):
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        took = _stopped(process, log)
        answer, _ = _until_closed(sock)
    assert answer == b"", answer[:300]
    assert took < 6, took
    assert "Application shutdown complete" in log.read_text(), log.read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_a_request_still_at_work_when_the_shutdown_time_is_up_is_answered_503(tmp_path: Path) -> None:
    """A start waiting for SQLite's write lock (another program holds it) when SIGTERM comes, with
    GOVFLOW_SHUTDOWN_TIMEOUT_SECONDS=1: uvicorn cancels it after a second while its thread goes on, and the client
    got uvicorn's plain-text 500 although the instance could still be stored. Expected: a 503 problem that says
    so and asks for a retry with the same Idempotency-Key; the service stops once the thread is done, logging a
    line for the request, not a traceback."""
    with _serve(tmp_path, shutdown_timeout_seconds="1", database_busy_timeout_seconds="30") as (process, port, log):
        from service.auth import mint_token

        token = mint_token("s" * 40, "oa", ["applicant"], False, datetime.now(UTC), timedelta(hours=1))
        holder = sqlite3.connect(tmp_path / "data" / "govflow.db", timeout=30, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        answers: list[httpx.Response] = []
        client = threading.Thread(target=lambda: answers.append(httpx.post(
            f"http://127.0.0.1:{port}/api/v1/process-instances", timeout=30,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "k-1"},
            json={**BODY, "business_key": "AT-WORK"})))
        client.start()
        time.sleep(1.0)  # the start waits for the lock
        process.send_signal(signal.SIGTERM)
        client.join(timeout=10)
        holder.execute("ROLLBACK")
        holder.close()
        _stopped(process, log, within=40)
    assert answers and answers[0].status_code == 503, answers and answers[0].text
    problem = answers[0].json()
    assert problem["type"] == "/problems/shutting-down" and "Idempotency-Key" in problem["detail"], problem
    assert answers[0].headers["retry-after"] == "5"
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]  # one line says what happened
    assert "POST /api/v1/process-instances was still at work when the service stopped" in text, text[-3000:]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_serve_stops_on_ctrl_c_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) in a terminal: the service stops as on SIGTERM, exit status 0, no traceback."""
    with _serve(tmp_path) as (process, _, log):
        process.send_signal(signal.SIGINT)
        _stopped(process, log)
    assert process.returncode == 0 and "Traceback" not in log.read_text(), (process.returncode, log.read_text())
    assert "Application shutdown complete" in log.read_text()


def test_every_way_the_service_takes_a_credential_counts_before_a_body_is_read(patient: Api) -> None:
    """BodyLimit asks service/api/deps.py: credentials_check which budget a body counts against, before any route
    has seen the request: each way a route takes a credential counts (a token or an API key as Bearer, X-API-Key,
    Basic with either as the password, the console's cookie), and anything the routes would refuse does not."""
    import asyncio

    from service.api.deps import credentials_check

    check = credentials_check(patient.server.ctx)
    token = patient.token("oa", ("applicant",))
    expired = mint_token(SECRET, "oa", ["applicant"], False, datetime.now(UTC) - timedelta(hours=2), timedelta(hours=1))
    r = patient.admin.post("/api-keys", json={"name": "oa-system", "groups": ["applicant"]})
    assert r.status_code == 201, r.text
    key = r.json()["key"]

    def presents(*headers: tuple[str, str]) -> bool:
        scope = {"type": "http", "headers": [(n.lower().encode(), v.encode("latin-1")) for n, v in headers]}
        return asyncio.run(check(scope))

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert presents(("Authorization", f"Bearer {token}"))
    assert presents(("Authorization", f"bearer {key}"))
    assert presents(("X-API-Key", key))
    assert presents(("Authorization", basic("oa", token)))
    assert presents(("Authorization", basic("oa-system", key)))
    assert presents(("Cookie", f"theme=dark; govflow_console={token}"))
    # the one a route takes: X-API-Key before Authorization, the first of a repeated header
    assert presents(("Authorization", "Bearer nonsense"), ("X-API-Key", key))
    assert not presents(("Authorization", f"Bearer {token}"), ("X-API-Key", "gfk_aaaaaaaaaaaa_" + "b" * 40))
    assert not presents(("Authorization", "Bearer nonsense"), ("Authorization", f"Bearer {token}"))
    assert presents(("Authorization", f"Bearer {token}"), ("Authorization", "Bearer nonsense"))
    assert not presents()
    assert not presents(("Authorization", f"Bearer {token[:-2]}"))
    assert not presents(("Authorization", "Bearer " + key[:-1] + ("A" if key[-1] != "A" else "B")))
    assert not presents(("X-API-Key", "gfk_aaaaaaaaaaaa_" + "b" * 40))
    assert not presents(("Authorization", basic("oa", "")))
    assert not presents(("Authorization", "Basic %%%"))
    assert not presents(("Authorization", f"Token {token}"))
    assert not presents(("Cookie", f"govflow_consolex={token}"))
    assert not presents(("Authorization", f"Bearer {expired}"))


def test_credential_lookups_before_a_body_is_read_are_bounded(patient: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """An API key is looked up in the database before its body is read, outside the service's request slots. A
    review sent heads with 240 made-up keys each (all were looked up, in the request threads) and a large
    Content-Length, then closed: 1,000 such heads kept every other request seconds slow for 200 s. Now one key
    per request is looked up, at most `lookups` at once beside the request threads, and with `waiting` lookups
    already waiting a key is taken as no credential without one."""
    import asyncio
    import threading as _threading

    from service.api import deps

    release = _threading.Event()
    calls: list[str] = []

    def slow_lookup(ctx: object, presented: str) -> object:
        calls.append(presented)
        release.wait(10)
        raise deps.Unauthorized("invalid API key")

    monkeypatch.setattr(deps, "_authenticate_key", slow_lookup)
    check = deps.credentials_check(patient.server.ctx, lookups=1, waiting=2)

    def scope(n: int) -> dict[str, object]:
        return {"type": "http", "headers": [(b"x-api-key", f"gfk_aaaaaaaaaaaa_{n:040d}".encode())] * 3}

    async def flood() -> list[bool]:
        tasks = [asyncio.ensure_future(check(scope(n))) for n in range(6)]
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:  # the first lookup has begun in its thread
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # and no second one begins beside it
        looked_up = len(calls)
        release.set()
        answers = await asyncio.gather(*tasks)
        assert looked_up == 1, calls  # one at a time, one key of the three headers
        return answers

    assert asyncio.run(flood()) == [False] * 6
    assert len(calls) == 3, calls  # the first, and the two that waited; the other three were not looked up


def test_a_small_body_that_does_not_come_whole_counts_against_the_budget(tmp_path: Path,
                                                                         database_url: str | None) -> None:
    """A body of at most 16 KiB that comes in one piece counts against no budget (a console login has no credential
    to present); a review held 70 MiB with 3,000 clients that each sent all but a byte of 16 KiB. One that does not
    come whole counts: here four such clients without credentials hold 64,000 bytes of their 64 KiB, and a fifth
    is answered 503; a console login, and a change with a token, still go through."""
    with served(tmp_path, database_url, max_request_bytes=65_536, max_deployment_bytes=65_536) as api:
        port = api.server.port
        token = api.token("oa", ("applicant",))
        with ExitStack() as stack:
            for _ in range(4):
                holder = stack.enter_context(_connect(port, START + b"Content-Length: 16384\r\n\r\n"))
                holder.sendall(b"a" * 16_000)
            time.sleep(0.3)
            with _connect(port, START + b"Content-Length: 16384\r\n\r\n" + b"a" * 2000) as sock:
                answer, _ = _until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
            login = f"credential={token}".encode()
            with _connect(port, b"POST /console/login HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n"
                          + f"Content-Length: {len(login)}\r\n\r\n".encode() + login) as sock:
                assert _until_closed_or_answered(sock)[0].startswith(b"HTTP/1.1 303")
            body = json.dumps({**BODY, "business_key": "SMALL"}).encode()
            with _connect(port, START + b"Authorization: Bearer " + token.encode() + b"\r\n"
                          + f"Content-Length: {len(body)}\r\n\r\n".encode() + body) as sock:
                answer, _ = _until_closed_or_answered(sock)
            assert answer.startswith(b"HTTP/1.1 201"), answer[:300]


@pytest.mark.parametrize(("declared", "pieces", "credentialed", "counted"), [
    (16_384, 1, False, None),  # small and whole: no budget, no credential asked for
    (16_384, 2, False, "anonymous"),  # small, not whole
    (16_385, 1, False, "anonymous"),  # above SMALL_BODY, whole
    (16_385, 1, True, "trusted"),
    (16_384, 2, True, "trusted"),
])
def test_which_budget_a_body_counts_against(declared: int, pieces: int, credentialed: bool,
                                            counted: str | None) -> None:
    """BodyLimit on its own, at SMALL_BODY's boundary: what a body holds of which budget while it runs and its
    answer is sent, and that it is given back after."""
    import asyncio

    from service.api.middleware import BodyLimit

    asked: list[bool] = []
    held: dict[str, int] = {}
    answering: dict[str, int] = {}

    async def app(scope: object, receive: object, send: Any) -> None:
        held.update(trusted=limit.trusted.held, anonymous=limit.anonymous.held)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        answering.update(trusted=limit.trusted.held, anonymous=limit.anonymous.held)
        await send({"type": "http.response.body", "body": b""})

    async def check(scope: object) -> bool:
        asked.append(True)
        return credentialed

    limit = BodyLimit(app, default_limit=65_536, limits={"/api/v1/deployments": 65_536}, credentialed=check)
    body = b"a" * declared
    cut = len(body) // pieces
    messages = [{"type": "http.request", "body": body[:cut], "more_body": pieces > 1}]
    if pieces > 1:
        messages.append({"type": "http.request", "body": body[cut:], "more_body": False})

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: object) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": "/api/v1/process-instances", "query_string": b"",
             "headers": [(b"content-length", str(declared).encode())]}
    asyncio.run(limit(scope, receive, send))
    expected = {"trusted": 0, "anonymous": 0}
    if counted is not None:
        expected[counted] = declared
    assert held == expected
    assert answering == held  # held while the answer is sent: the body is held as long
    assert bool(asked) == (counted is not None)
    assert (limit.trusted.held, limit.anonymous.held) == (0, 0)
