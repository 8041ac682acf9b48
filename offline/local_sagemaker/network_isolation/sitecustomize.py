"""No network for a local training job run with EnableNetworkIsolation, installed at interpreter start-up.

The local executor puts this folder first on the job's PYTHONPATH (``container.isolate_network``), so Python imports
this module before the training script, and again in every Python process the job starts (DataLoader workers under
spawn or forkserver; fork inherits it). As in SageMaker's isolated container, where only the loopback interface
exists: connecting, sending or resolving a name anywhere but the loopback fails at once, with OSError ENETUNREACH or
socket.gaierror EAI_AGAIN, the errors of a machine without a network, so code that handles "no network" behaves as
it would there; AF_UNIX sockets (multiprocessing, torch's shared memory) and loopback stay usable. A Python-level
guard, not a network namespace: a C extension calling connect(2) itself would not be stopped. The executor also
unsets the proxy variables and the AWS credentials (SageMaker gives an isolated container none).

A sitecustomize that was already on the path (a distribution's, a virtualenv's) still runs after this one.
"""

from __future__ import annotations

import errno
import importlib.machinery
import importlib.util
import ipaddress
import os
import socket
import sys
from typing import Any

REFUSAL = "network isolation: the training job runs with EnableNetworkIsolation and may not reach {}"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_INTERNET = (socket.AF_INET, socket.AF_INET6)

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto
_getaddrinfo = socket.getaddrinfo
_gethostbyname = socket.gethostbyname
_gethostbyname_ex = socket.gethostbyname_ex


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None or str(host).lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _refuse_address(sock: socket.socket, address: Any) -> None:
    if sock.family in _INTERNET and isinstance(address, tuple) and not _is_loopback(address[0]):
        raise OSError(errno.ENETUNREACH, REFUSAL.format(f"{address[0]}:{address[1]}"))


def connect(self: socket.socket, address: Any) -> None:
    _refuse_address(self, address)
    return _connect(self, address)


def connect_ex(self: socket.socket, address: Any) -> int:
    if self.family in _INTERNET and isinstance(address, tuple) and not _is_loopback(address[0]):
        return errno.ENETUNREACH
    return _connect_ex(self, address)


def sendto(self: socket.socket, data: Any, *flags_and_address: Any) -> int:
    _refuse_address(self, flags_and_address[-1])
    return _sendto(self, data, *flags_and_address)  # type: ignore[no-any-return]


def _is_address(host: Any) -> bool:
    """A numeric address resolves without a network (the connection to it is refused instead)."""
    try:
        ipaddress.ip_address(str(host.decode() if isinstance(host, bytes) else host).split("%", 1)[0])
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _refuse_name(host: Any) -> None:
    if not _is_loopback(host) and not _is_address(host):
        name = host.decode(errors="replace") if isinstance(host, bytes) else host
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution (" + REFUSAL.format(name) + ")")


def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    _refuse_name(host)
    return _getaddrinfo(host, *args, **kwargs)


def gethostbyname(host: str) -> str:
    _refuse_name(host)
    return _gethostbyname(host)


def gethostbyname_ex(host: str) -> Any:
    _refuse_name(host)
    return _gethostbyname_ex(host)


def install() -> None:
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex


def _run_the_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


install()
_run_the_next_sitecustomize()
