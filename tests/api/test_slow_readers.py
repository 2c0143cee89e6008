"""Clients that read their answers slowly, or never (service/serving.py): an answer that cannot be written for
GOVFLOW_REQUEST_READ_TIMEOUT_SECONDS ends its connection, and what waited to write it gives its slot back; a
client that keeps reading, however slowly, gets the whole answer. And a head's 408 is in the access log."""
from __future__ import annotations

import contextlib
import logging
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from uvicorn.logging import AccessFormatter

from service import serving
from service.api.middleware import write_share
from service.replicas import request_threads
from tests.api.test_slow_clients import BODY, _serve, _stopped
from tests.support import FIXTURES, Api

# a diagram of about 3 MB (a comment in it), answered whole by GET .../xml in one piece
DIAGRAM = (FIXTURES / "wait_a_day.bpmn").read_bytes().replace(
    b"<bpmn:process ", b"<!-- " + b"x" * 3_000_000 + b" -->\n  <bpmn:process ", 1)
XML = b"/api/v1/process-definitions/wait_a_day/xml"


def _deploy_large(api: Api) -> Api:
    r = api.admin.post("/deployments", files=[("files", ("wait_a_day.bpmn", DIAGRAM))])
    assert r.status_code == 201, r.text
    return api


@pytest.fixture
def large(hasty: Api) -> Api:
    """The service with 1 s for a head, a body and an answer (conftest.hasty), and the large diagram deployed."""
    return _deploy_large(hasty)


@pytest.fixture
def large_patient(patient: Api) -> Api:
    """The service with the default 30 s (conftest.patient), and the large diagram deployed."""
    return _deploy_large(patient)


def _get(api: Api, path: bytes = XML) -> bytes:
    token = api.token("reader", ("applicant",))
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n"


def _connect(port: int, data: bytes, segment: int = 1400, receive_buffer: int = 4096) -> socket.socket:
    """A connection with a small receive buffer and segments of `segment` bytes, as across a network (on loopback
    segments of 64 KiB let the system take megabytes of an answer into its own buffers): the service's writes back
    up after some 100 kB."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connecting, to take effect
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, segment)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(data)
    return sock


@contextlib.contextmanager
def _logged(name: str) -> Iterator[list[logging.LogRecord]]:
    """What the logger `name` logs meanwhile, from INFO up (the tests' service logs at "warning" only)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _rest(sock: socket.socket, within: float = 5) -> tuple[bytes, bool]:
    """What is left to read, and whether the service closed the connection (else `within` seconds passed)."""
    sock.settimeout(within)
    received = bytearray()
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return bytes(received), True
            received += data
    except ConnectionResetError:
        return bytes(received), True
    except TimeoutError:
        return bytes(received), False


def _answered(sock: socket.socket, within: float = 10) -> None:
    """Wait until an answer has begun to arrive, reading none of it."""
    deadline = time.monotonic() + within
    while not sock.recv(16, socket.MSG_PEEK).startswith(b"HTTP/1.1 "):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_clients_that_never_read_their_answers_do_not_hold_back_other_changes(large: Api) -> None:
    """Clients that pipeline a GET of a large answer (3 MB) and a change, then read nothing: the change's answer
    waits for the one before it to be written, in the slot WriteLimit gave the change, and as many such clients as
    there are slots for changes stopped every change of every other client for as long as they kept their
    connections open. Expected (1 s here): their connections are dropped once nothing of their answers has left
    for a second, and another client's start is served meanwhile, within a few seconds."""
    settings = large.server.settings
    stalled = write_share(request_threads(settings)) + 2
    change = b"POST /api/v1/process-instances HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    with ExitStack() as stack:
        socks = [stack.enter_context(_connect(large.server.port, _get(large) + change)) for _ in range(stalled)]
        for sock in socks:
            _answered(sock)
        answered = time.monotonic()
        time.sleep(0.2)  # each change is at work right behind its GET's answer
        fast = httpx.Client(base_url=f"{large.server.url}/api/v1", timeout=8, headers={
            "Authorization": f"Bearer {large.token('oa', ('applicant',))}"})
        stack.callback(fast.close)
        r = fast.post("/process-instances", json={**BODY, "business_key": "FAST"})
        took = time.monotonic() - answered
        assert r.status_code == 201, r.text
        assert took < 4, took
        time.sleep(max(0.0, answered + 3 - time.monotonic()))  # read nothing before they are dropped
        for sock in socks:
            answer, closed = _rest(sock)
            assert closed and len(answer) < len(DIAGRAM), (closed, len(answer))


def test_a_client_that_never_reads_is_cut_off_and_one_that_reads_steadily_gets_everything(large: Api) -> None:
    """Five pipelined GETs of a 3 MB diagram that the client never reads kept the connection (and 3 MB of answer
    in memory, and the next answer in line) for as long as the client liked. Expected (1 s here): two seconds after
    the client last took some of it, the connection is dropped, the answers cut short (logged, with the reason, and
    counted in govflow_http_write_timeouts_total).
    A client that reads the same answer slowly but without stopping (about 1 MB/s, three times the timeout, with
    the service's writes held back all along) gets all of it, to the byte."""
    from prometheus_client import REGISTRY

    def write_timeouts() -> float:
        return REGISTRY.get_sample_value("govflow_http_write_timeouts_total") or 0.0

    dropped = write_timeouts()
    idle = _connect(large.server.port, _get(large) * 5)
    steady = _connect(large.server.port, _get(large))
    with _logged("govflow") as records, idle, steady:
        address = "{}:{}".format(*idle.getsockname())
        started = time.monotonic()
        received = bytearray()
        steady.settimeout(5)
        while True:
            head, sep, body = bytes(received).partition(b"\r\n\r\n")
            if sep and len(body) >= len(DIAGRAM):
                break
            data = steady.recv(65_536)
            assert data, len(received)
            received += data
            time.sleep(max(0.0, started + len(received) / 1_000_000 - time.monotonic()))  # 1 MB/s
        took = time.monotonic() - started
        assert head.startswith(b"HTTP/1.1 200"), head
        assert body == DIAGRAM
        assert took > 2.5, took  # paused all along, for more than twice the timeout
        answer, closed = _rest(idle)  # by now its connection has been closed for a while
    assert closed and len(answer) < len(DIAGRAM), (closed, len(answer))
    cut = [record.args for record in records if str(record.msg).startswith("closed the connection of")]
    # its system took the first 4 KB into its receive buffer: then nothing for twice the timeout
    assert [args[:2] for args in cut if args] == [(address, "none for 2 s")], cut
    assert write_timeouts() - dropped == 1  # counted in /metrics


def test_a_client_that_reads_a_trickle_is_cut_off(large: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a body must come (BodyLimit), an answer must leave at 1 KB/s on average after its first `timeout`: a
    client that read a little every few seconds, so that some of its answer left between any two looks of the
    service, kept its connection, and the next answer in line, for hours. The system takes what a client reads
    back into its send queue only once the client's receive buffer is about empty, a kilobyte at the least, so
    here the pace is 8 KB/s for a client that reads 3 KB/s, with 1 s: it is dropped once its average is below,
    after 1 s and what it took at 8 KB/s (about 1.3 s; logged with the reason), its answer cut short."""
    monkeypatch.setattr(serving.GuardedH11Protocol, "min_rate", 8192, raising=False)
    with (_logged("govflow") as records,
          _connect(large.server.port, _get(large), segment=256, receive_buffer=1) as sock):
        address = "{}:{}".format(*sock.getsockname())
        started = time.monotonic()
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while time.monotonic() - started < 3:
                received += len(sock.recv(600))
                time.sleep(0.2)
        answer, closed = _rest(sock)
    assert closed and received + len(answer) < len(DIAGRAM), (closed, received + len(answer))
    cut = [record.args for record in records if str(record.msg).startswith("closed the connection of")]
    assert len(cut) == 1 and cut[0] is not None, cut
    client, reason, taken, took, _ = cut[0]  # type: ignore[misc]
    assert client == address and reason == "under 8192 bytes a second", cut
    assert taken > 1000 and abs(took - (1 + taken / 8192)) < 0.3, cut  # not for want of progress in a second


def test_a_head_that_does_not_arrive_in_time_is_in_the_access_log(hasty: Api) -> None:
    """The protocol answers half a head with 408 itself, and uvicorn's access log never saw it: an attack by slow
    clients did not show there. Expected (1 s here): a line of the same shape as uvicorn's, with the client's
    address; of the request nothing is known for sure, so its method, path and version are "-"."""
    with _logged("uvicorn.access") as records:
        with _connect(hasty.server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") as half:
            late = half.getsockname()
            answer, closed = _rest(half)
        assert answer.startswith(b"HTTP/1.1 408") and closed, answer[:300]
        with _connect(hasty.server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") as whole:
            timely = whole.getsockname()
            answer, _ = _rest(whole)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    formatter = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    lines = [formatter.format(record) for record in records]
    assert lines == [f'{late[0]}:{late[1]} - "- - HTTP/-" 408 Request Timeout',
                     f'{timely[0]}:{timely[1]} - "GET /healthz HTTP/1.1" 200 OK'], lines


def test_a_change_gives_its_slot_back_as_soon_as_its_answer_starts(large_patient: Api) -> None:
    """A change held its slot (WriteLimit) until its answer had left: clients without credentials that pipelined a
    large GET and a change (answered 401 behind the GET) and read nothing took every slot for changes for as long
    as the pace of answers allowed (30 s here), and reconnected. The slot is given back when the answer starts
    (its change is committed by then): another client's start is served at once."""
    api = large_patient
    stalled = write_share(request_threads(api.server.settings)) + 2
    change = b"POST /api/v1/process-instances HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    with ExitStack() as stack:
        socks = [stack.enter_context(_connect(api.server.port, _get(api) + change)) for _ in range(stalled)]
        for sock in socks:
            _answered(sock)
        time.sleep(0.3)  # each change has been answered behind its GET's answer, which is not read
        with httpx.Client(base_url=f"{api.server.url}/api/v1", timeout=8, headers={
                "Authorization": f"Bearer {api.token('oa', ('applicant',))}"}) as fast:
            started = time.monotonic()
            r = fast.post("/process-instances", json={**BODY, "business_key": "FAST"})
            took = time.monotonic() - started
        assert r.status_code == 201, r.text
        assert took < 2, took


def test_serve_stops_in_its_time_when_clients_do_not_take_their_answers(tmp_path: Path) -> None:
    """SIGTERM while clients read nothing of answers that are written: the service waited the whole shutdown time
    for them and then logged a traceback for each (their requests cancelled while waiting to write). An answer still
    not taken a second before the shutdown time runs out is dropped, its request ending as if its client had gone
    (logged); a client that is taking its answers meanwhile gets them whole. Expected (4 s here): stopped after
    about 3 s, no traceback, each answer the reader got complete."""
    get = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
    with (_serve(tmp_path, request_read_timeout_seconds="60", shutdown_timeout_seconds="4") as (process, port, log),
          ExitStack() as stack):
        for _ in range(3):
            sock = stack.enter_context(_connect(port, get * 8))
            _answered(sock)
        # and one whose next request's body is still coming (that connection is closed at once on SIGTERM, the
        # unread answer before it still in its buffer)
        sock = stack.enter_context(_connect(port, get + b"POST /api/v1/process-instances HTTP/1.1\r\nHost: x\r\n"
                                            b"Content-Length: 1000\r\n\r\n{"))
        _answered(sock)
        reader = stack.enter_context(_connect(port, get * 8))
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        received = bytearray()
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while True:
                data = reader.recv(65_536)
                if not data:
                    break
                received += data
                time.sleep(max(0.0, started + len(received) / 1_000_000 - time.monotonic()))  # 1 MB/s
        took = _stopped(process, log)
    text = log.read_text()
    assert 2.5 < took < 6, (took, text[-3000:])
    assert "Traceback" not in text, text[-3000:]
    assert text.count("not taken when the service stopped") == 4, text[-3000:]
    assert "graceful shutdown exceeded" not in text, text[-3000:]
    answers = bytes(received).split(b"HTTP/1.1 200")[1:]  # those begun before the stop (uvicorn serves no more)
    assert answers and all(a.rstrip().endswith(b"}") for a in answers), len(received)
