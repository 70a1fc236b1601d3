"""The connection to one etcd server: URL parsing, retries and the v3 calls.

Why etcd3gw: it is the maintained Python client that needs neither gRPC
nor protobuf (`etcd3`, the gRPC client, has had no release since 2020 and
fails to import with protobuf 4.21 and newer). It speaks etcd's JSON
gateway, which etcd 3.4 (Debian's `etcd-server`) serves at `/v3/`, and
finds that path by asking the server's version. We use it for the HTTP
session, the API path and its error classes; the calls below go through
its `post` so that we see the response header (the store revision a watch
resumes from), which its higher-level helpers drop. Lease keep-alive and
watch resumption are not left to it: its lease refresh is one call and its
watch thread ends silently when the connection drops, so both live in
registry.etcd_keepalive and registry.etcd_watch.

Every call is retried with a short backoff while the server cannot be
reached, until the registry's timeout; then RegistryUnavailable names the
address and how long it waited.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qs, urlsplit

from registry.errors import RegistryError, RegistryLocationError, RegistryUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Namespace (key prefix) when the URL has no path, as in Kratos.
DEFAULT_NAMESPACE = "/microservices"
#: Seconds an operation may take, retries included, unless the URL says.
DEFAULT_TIMEOUT = 5.0

# Backoff between retries of one call while the server is unreachable.
_RETRY_FIRST = 0.05
_RETRY_MAX = 0.5


@dataclass(frozen=True)
class EtcdLocation:
    """Where an etcd registry lives, parsed from `etcd://HOST:PORT/PREFIX`."""

    url: str
    host: str
    port: int
    namespace: str
    timeout: float

    @property
    def address(self) -> str:
        """host:port, as messages name the server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_etcd_url(url: str) -> EtcdLocation:
    """Parse `etcd://HOST:PORT[/NAMESPACE][?timeout=SECONDS]`.

    The path is the namespace under which keys live (default
    `/microservices`); a trailing slash is dropped. Raises
    RegistryLocationError naming the URL and what is wrong with it.
    """
    parts = urlsplit(url)
    if parts.scheme != "etcd":
        raise RegistryLocationError(url, "an etcd URL starts with etcd://")
    host, port = _host_and_port(url, parts)
    namespace = parts.path.rstrip("/") or DEFAULT_NAMESPACE
    timeout = _timeout_option(url, parts.query)
    return EtcdLocation(url, host, port, namespace, timeout)


def _host_and_port(url: str, parts: SplitResult) -> tuple[str, int]:
    fix = "; write etcd://HOST:PORT/PREFIX, e.g. etcd://127.0.0.1:2379/microservices"
    if parts.username or parts.password:
        raise RegistryLocationError(url, "user names in etcd URLs are not supported")
    if not parts.hostname:
        raise RegistryLocationError(url, "missing host" + fix)
    try:
        port = parts.port
    except ValueError as exc:
        raise RegistryLocationError(url, f"bad port ({exc})" + fix) from None
    if port is None:
        raise RegistryLocationError(url, "missing port" + fix)
    return str(parts.hostname), int(port)


def _timeout_option(url: str, query: str) -> float:
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"timeout"})
    if unknown:
        raise RegistryLocationError(url, f"unknown option {unknown[0]!r}")
    if "timeout" not in options:
        return DEFAULT_TIMEOUT
    text = options["timeout"][-1]
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise RegistryLocationError(url, f"timeout must be seconds > 0, not {text!r}")
    return value


def b64(text: str) -> str:
    """A key or value as the JSON gateway wants it: base64 of its UTF-8."""
    return base64.b64encode(text.encode()).decode("ascii")


def unb64(data: str) -> str:
    """The text of a base64 key or value from the JSON gateway."""
    return base64.b64decode(data).decode("utf-8", errors="replace")


def prefix_end(prefix: str) -> str:
    """The base64 range end that covers every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return base64.b64encode(b"\0").decode("ascii")
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode("ascii")


@dataclass(frozen=True)
class Entry:
    """One key of the store: its text value, lease id and last revision."""

    key: str
    value: str
    lease: int
    mod_revision: int


def entry_from_kv(kv: dict[str, Any]) -> Entry:
    """An Entry from a gateway `kv` object (key and value in base64)."""
    return Entry(
        key=unb64(kv["key"]),
        value=unb64(kv.get("value", "")),
        lease=int(kv.get("lease", 0)),
        mod_revision=int(kv.get("mod_revision", 0)),
    )


class EtcdConnection:
    """Calls to one etcd server through its JSON gateway, with retries."""

    def __init__(self, location: EtcdLocation) -> None:
        try:
            import etcd3gw
        except ImportError as exc:
            raise RegistryLocationError(
                location.url, "the etcd backend needs: pip install 'corral[etcd]'"
            ) from exc
        self.location = location
        self.client = etcd3gw.client(
            host=location.host, port=location.port, timeout=location.timeout
        )

    def call(self, what: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one gateway request, retrying until the timeout.

        `what` names the operation in log lines and errors.
        """
        return self.retry(what, lambda: self._post(path, body))

    def retry(self, what: str, action: Callable[[], T]) -> T:
        """Run `action`, retrying on connection errors until the timeout."""
        from etcd3gw import exceptions

        timeout = self.location.timeout
        deadline = time.monotonic() + timeout
        pause = _RETRY_FIRST
        while True:
            try:
                return action()
            except (
                exceptions.ConnectionFailedError,
                exceptions.ConnectionTimeoutError,
            ) as exc:
                reason = _reason(exc)
            except exceptions.Etcd3Exception as exc:
                raise self.rejected(what, exc) from exc
            if time.monotonic() + pause > deadline:
                where = f"etcd at {self.location.address} ({what})"
                raise RegistryUnavailable(where, timeout, reason)
            log.debug("etcd %s: %s; retrying in %.2f s", what, reason, pause)
            time.sleep(pause)
            pause = min(pause * 2, _RETRY_MAX)

    def rejected(self, what: str, exc: Exception) -> RegistryError:
        """The error for a request that the server refused."""
        return RegistryError(
            f"etcd at {self.location.address} refused {what}: {_reason(exc)}"
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.client.get_url(path)
        result: dict[str, Any] = self.client.post(url, json=body)
        return result

    def check(self) -> None:
        """Reach the server once, so a wrong address fails at open time."""
        self.call("status", "/maintenance/status", {})

    def get_prefix(self, prefix: str) -> tuple[int, list[Entry]]:
        """Every key under `prefix`, and the store revision they were read at."""
        body = {"key": b64(prefix), "range_end": prefix_end(prefix)}
        result = self.call(f"get {prefix}", "/kv/range", body)
        revision = int(result["header"]["revision"])
        return revision, [entry_from_kv(kv) for kv in result.get("kvs", [])]

    def get_key(self, key: str) -> Entry | None:
        """One key, or None when it does not exist."""
        result = self.call(f"get {key}", "/kv/range", {"key": b64(key)})
        kvs = result.get("kvs", [])
        return entry_from_kv(kvs[0]) if kvs else None

    def put(self, key: str, value: str, lease: int) -> None:
        """Write one key, attached to `lease` (0: none)."""
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        self.call(f"put {key}", "/kv/put", body)

    def delete(self, key: str) -> None:
        """Delete one key; an absent key is not an error."""
        self.call(f"delete {key}", "/kv/deleterange", {"key": b64(key)})

    def delete_unchanged(self, key: str, mod_revision: int) -> bool:
        """Delete `key` only if nobody wrote it since `mod_revision`."""
        txn = {
            "compare": [
                {
                    "key": b64(key),
                    "result": "EQUAL",
                    "target": "MOD",
                    "mod_revision": str(mod_revision),
                }
            ],
            "success": [{"request_delete_range": {"key": b64(key)}}],
            "failure": [],
        }
        result = self.call(f"delete {key}", "/kv/txn", txn)
        return bool(result.get("succeeded", False))

    def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; returns its id."""
        result = self.call("lease grant", "/lease/grant", {"TTL": ttl, "ID": 0})
        return int(result["ID"])

    def keep_alive(self, lease: int) -> int:
        """Refresh a lease once; returns its new TTL, or -1 if it is gone."""
        result = self.call("lease keep-alive", "/lease/keepalive", {"ID": str(lease)})
        return int(result.get("result", {}).get("TTL", -1))

    def revoke(self, lease: int) -> None:
        """End a lease; the keys attached to it are deleted with it."""
        from etcd3gw import exceptions

        try:
            self.call("lease revoke", "/kv/lease/revoke", {"ID": str(lease)})
        except RegistryError as exc:
            if isinstance(exc.__cause__, exceptions.Etcd3Exception):
                log.debug("lease %s was already gone: %s", lease, exc)
                return
            raise


def _reason(exc: BaseException) -> str:
    detail = getattr(exc, "detail_text", None) or str(exc) or type(exc).__name__
    return str(detail).strip().splitlines()[0][:300]
