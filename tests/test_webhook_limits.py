"""The webhook receiver under idle, slow and many connections, and over its per-minute cap,
over real sockets on 127.0.0.1. Every test is bounded by socket timeouts: none can hang."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from test_webhook_receiver import PREFIX, SECRET, b64, deliveries, gift, make_ledger, post, status

from etl.confirm.webhook_guard import ConnectionLimits
from etl.confirm.webhook_receiver import ReceiverConfig, ReceiverHandle, running_receiver


def config(path: Path, **options: object) -> ReceiverConfig:
    make_ledger(path, ["G1", "G2", "G3", "G4", "G5"])
    return ReceiverConfig(ledger_path=path, kind="gift", source="LegacyCRM", prefix=PREFIX,
                          secret=SECRET, **options)  # type: ignore[arg-type]


def delivery(tid: str, gift_id: int) -> bytes:
    return json.dumps({"event": "GiftCreate", "gift": gift(tid, gift_id)}).encode()


def send(handle: ReceiverHandle, body: bytes) -> httpx.Response:
    return post(handle.url, body, b64(body))


@contextmanager
def idle_sockets(port: int, n: int) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        socks = []
        for _ in range(n):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            socks.append(sock)
        yield socks


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes `sock` within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_80_idle_connections_do_not_stop_a_signed_delivery(tmp_path: Path) -> None:
    """uvicorn's limit_concurrency answered 503 to everything while 64 sockets sat idle."""
    cfg = config(tmp_path / "gifts.sqlite")  # the default limits
    with running_receiver(cfg) as handle, idle_sockets(handle.port, 80):
        time.sleep(0.2)  # let the server accept them all
        start = time.monotonic()
        answer = send(handle, delivery("G1", 50001))
        elapsed = time.monotonic() - start
        assert answer.status_code == 200, answer.text
        assert answer.json()["confirmed"] == 1 and elapsed < 3, elapsed
        again = send(handle, delivery("G2", 50002))  # and the next one too
        assert again.status_code == 200 and again.json()["confirmed"] == 1
    assert status(tmp_path / "gifts.sqlite")["G2"][:2] == ("confirmed", "50002")


def test_idle_and_slow_clients_are_dropped_after_the_header_timeout(tmp_path: Path) -> None:
    cfg = config(tmp_path / "gifts.sqlite", limits=ConnectionLimits(header_timeout=1.0))
    with running_receiver(cfg) as handle, idle_sockets(handle.port, 3) as socks:
        slow = socks[0]
        slow.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        closed = []
        for i in range(12):  # a header byte every 0.25 s never completes the head
            try:
                slow.sendall(b"X-A: %d\r\n" % i)
            except OSError:
                closed.append(True)
                break
            if closed_by_server(slow, 0.25):
                closed.append(True)
                break
        assert closed and time.monotonic() - start < 2.5
        assert all(closed_by_server(s, 2.0) for s in socks[1:])  # silent ones too


def test_a_body_that_never_arrives_is_answered_408(tmp_path: Path) -> None:
    cfg = config(tmp_path / "gifts.sqlite", body_timeout=0.5)
    with running_receiver(cfg) as handle, idle_sockets(handle.port, 1) as (sock,):
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 500\r\n\r\n{\"event\": ")
        sock.settimeout(3)
        head = sock.recv(200)
    assert head.startswith(b"HTTP/1.1 408")
    assert deliveries(tmp_path / "gifts.sqlite") == []


def test_connections_over_the_per_client_cap_push_out_idle_ones(tmp_path: Path) -> None:
    limits = ConnectionLimits(per_client=4, max_connections=6)
    cfg = config(tmp_path / "gifts.sqlite", limits=limits)
    with running_receiver(cfg) as handle, idle_sockets(handle.port, 10) as socks:
        assert all(closed_by_server(s, 3) for s in socks[:6])  # the longest idle go first
        assert not any(closed_by_server(s, 0.2) for s in socks[6:])
        assert send(handle, delivery("G1", 50001)).status_code == 200  # room is made for it
        assert closed_by_server(socks[6], 3)
        assert not any(closed_by_server(s, 0.2) for s in socks[7:])


def test_deliveries_over_the_per_minute_cap_get_503_with_retry_after(tmp_path: Path) -> None:
    now = [1000.0]
    cfg = config(tmp_path / "gifts.sqlite", max_per_minute=3, monotonic=lambda: now[0])
    with running_receiver(cfg) as handle:
        codes = [send(handle, delivery(f"G{i}", 50000 + i)).status_code for i in (1, 2, 3)]
        over = send(handle, delivery("G4", 50004))
        assert codes == [200, 200, 200] and over.status_code == 503
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert len(deliveries(tmp_path / "gifts.sqlite")) == 3  # nothing stored for it
        assert status(tmp_path / "gifts.sqlite")["G4"][0] == "accepted"
        now[0] += 61  # a minute later CRM+'s retry is taken
        assert send(handle, delivery("G4", 50004)).json()["confirmed"] == 1


def test_a_flood_of_forged_deliveries_stores_at_most_the_cap(tmp_path: Path) -> None:
    cfg = config(tmp_path / "gifts.sqlite", max_per_minute=5)
    with running_receiver(cfg) as handle, httpx.Client(trust_env=False, timeout=10) as client:
        for i in range(30):  # every body different: nothing to coalesce
            body = delivery("G1", 90000 + i)
            r = client.post(handle.url, content=body,
                            headers={"X-Virtuous-Signature": b64(body, b"forged")})
            assert r.status_code == 401
        good = send(handle, delivery("G1", 50001))  # forged ones do not use the real budget
        assert good.status_code == 200 and good.json()["confirmed"] == 1
    outcomes = [d[0] for d in deliveries(tmp_path / "gifts.sqlite")]
    assert outcomes == ["refused"] * 5 + ["applied"]


def test_a_busy_connection_is_never_pushed_out(tmp_path: Path) -> None:
    """Over the cap with no idle connection to close, the NEW connection is closed."""
    cfg = config(tmp_path / "gifts.sqlite", limits=ConnectionLimits(per_client=1),
                 body_timeout=2.0)
    with running_receiver(cfg) as handle, idle_sockets(handle.port, 1) as (busy,):
        busy.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        time.sleep(0.2)  # its request is in progress (the body is being read)
        with idle_sockets(handle.port, 1) as (late,):
            assert closed_by_server(late, 1.0)
        busy.settimeout(4)
        assert busy.recv(200).startswith(b"HTTP/1.1 408")
