"""The disruption probe that runs in each test pod (stdlib only; mounted from a ConfigMap into the agent image).

As upstream CNI projects test upgrades: every pod pings every peer (ICMP echo on a raw socket, every INTERVAL
seconds) and keeps one long-lived TCP connection to every peer's echo server, sending a numbered line every INTERVAL
and waiting for it to come back. A connection that fails (reset, timeout, wrong echo) counts as broken and is
dialled again. The test drives it over HTTP on port 8080 from the host: POST /start {"peers": [...]}, GET /report.

Report, per peer: ICMP sent/received/lost and the longest gap between two replies; TCP connections opened, broken,
round trips and the longest gap between two round trips.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INTERVAL = float(os.environ.get("PROBE_INTERVAL", "0.1"))
TCP_PORT = 7000
HTTP_PORT = 8080
lock = threading.Lock()
state: dict[str, dict[str, dict[str, float]]] = {"icmp": {}, "tcp": {}}
started = threading.Event()
stopped = threading.Event()


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp(peers: list[str]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(0.05)
    ident = os.getpid() & 0xFFFF
    now = time.monotonic()
    for peer in peers:
        state["icmp"][peer] = {"sent": 0, "received": 0, "last": now, "longest_gap": 0.0}
    seq = 0
    next_send = time.monotonic()
    while not stopped.is_set():
        if time.monotonic() >= next_send:
            seq = (seq + 1) & 0xFFFF
            for peer in peers:
                body = struct.pack("!d", time.monotonic())
                header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                packet = struct.pack("!BBHHH", 8, 0, checksum(header + body), ident, seq)
                with contextlib.suppress(OSError):
                    sock.sendto(packet + body, (peer, 0))
                    with lock:
                        state["icmp"][peer]["sent"] += 1
            next_send += INTERVAL
        try:
            data, (source, _) = sock.recvfrom(1024)
        except (TimeoutError, OSError):
            continue
        header_len = (data[0] & 0x0F) * 4
        kind, _, _, rid, _ = struct.unpack("!BBHHH", data[header_len : header_len + 8])
        if kind == 0 and rid == ident and source in state["icmp"]:
            with lock:
                entry = state["icmp"][source]
                arrived = time.monotonic()
                entry["longest_gap"] = max(entry["longest_gap"], arrived - entry["last"])
                entry["last"] = arrived
                entry["received"] += 1


def tcp_server() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", TCP_PORT))  # noqa: S104 (inside the test pod's own network namespace)
    server.listen(64)

    def echo(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    while True:
        conn, _ = server.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def tcp_client(peer: str) -> None:
    entry = {"connections": 0, "broken": 0, "round_trips": 0, "last": time.monotonic(), "longest_gap": 0.0}
    with lock:
        state["tcp"][peer] = entry
    n = 0
    while not stopped.is_set():
        try:
            conn = socket.create_connection((peer, TCP_PORT), timeout=2)
        except OSError:
            time.sleep(INTERVAL)
            continue
        with lock:
            entry["connections"] += 1
        reader = conn.makefile("rb")
        try:
            while not stopped.is_set():
                n += 1
                line = f"{n}\n".encode()
                conn.sendall(line)
                if reader.readline() != line:
                    raise ConnectionError("wrong or no echo")
                with lock:
                    arrived = time.monotonic()
                    entry["longest_gap"] = max(entry["longest_gap"], arrived - entry["last"])
                    entry["last"] = arrived
                    entry["round_trips"] += 1
                time.sleep(INTERVAL)
        except OSError:
            with lock:
                entry["broken"] += 1
        finally:
            with contextlib.suppress(OSError):
                conn.close()


def report() -> dict[str, object]:
    now = time.monotonic()
    with lock:
        out: dict[str, object] = {}
        for kind, peers in state.items():
            out[kind] = {
                peer: {
                    **{k: v for k, v in entry.items() if k != "last"},
                    # a gap still open at the time of the report counts too
                    "longest_gap": round(max(entry["longest_gap"], now - entry["last"]), 3),
                }
                for peer, entry in peers.items()
            }
        return out


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._reply(report())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path == "/stop":
            stopped.set()
            self._reply(report())
            return
        if not started.is_set():
            started.set()
            peers = [p for p in body["peers"] if p != body.get("self")]
            threading.Thread(target=icmp, args=(peers,), daemon=True).start()
            for peer in peers:
                threading.Thread(target=tcp_client, args=(peer,), daemon=True).start()
        self._reply({"started": True})

    def _reply(self, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


if __name__ == "__main__":
    threading.Thread(target=tcp_server, daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", HTTP_PORT), Handler).serve_forever()  # noqa: S104 (the pod's namespace)
