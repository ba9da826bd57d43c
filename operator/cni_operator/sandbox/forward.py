"""A TCP forwarder from the real nodes' network namespaces to the API server on the host's 127.0.0.1.

The API server listens on the host's loopback only. A real node lives in a network namespace of its own, so its
kubelet (which dials `127.0.0.1:<port>` from its kubeconfig) and its pods (which dial the `kubernetes` Service,
`10.96.0.1:443`, there being no kube-proxy) would reach nothing. This process binds those addresses inside each
node's namespace (a socket keeps the namespace it was created in), then returns to the host's namespace, where it
dials the API server for every accepted connection. Bytes are copied as they are; TLS is end to end.

Run as `python -m cni_operator.sandbox.forward --to 127.0.0.1:P --listen NETNS_PATH=ADDR:PORT ...`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import selectors
import socket
import threading

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _setns_fd(fd: int) -> None:
    """setns(2) through libc: os.setns exists only from Python 3.12 on."""
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _setns_fd(fd)
    finally:
        os.close(fd)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _serve(conn: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError:
        conn.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
    back.start()
    _pipe(conn, upstream)
    back.join()
    conn.close()
    upstream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--to", required=True, help="host address to dial, HOST:PORT")
    parser.add_argument("--listen", action="append", default=[], help="NETNS_PATH=ADDR:PORT (repeatable)")
    args = parser.parse_args()
    host, port = args.to.rsplit(":", 1)
    target = (host, int(port))
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    sel = selectors.DefaultSelector()
    for spec in args.listen:
        netns, addr = spec.split("=", 1)
        ip, lport = addr.rsplit(":", 1)
        _setns(netns)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, int(lport)))
        sock.listen(128)
        _setns_fd(home)
        sel.register(sock, selectors.EVENT_READ)
    print("forwarding", flush=True)
    while True:
        for key, _ in sel.select():
            listener: socket.socket = key.fileobj  # type: ignore[assignment]
            with contextlib.suppress(OSError):
                conn, _addr = listener.accept()
                threading.Thread(target=_serve, args=(conn, target), daemon=True).start()


if __name__ == "__main__":
    main()
