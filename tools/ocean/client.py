"""A bounded Ocean client: the `defichain` package's endpoint classes over a connection with deadlines.

The package's own `Connection.get` calls `requests.get(url)` with no timeout and
its `Ocean()` constructor sends a test request, also without one. We never
construct `Ocean`; `OceanClient` builds the same endpoint objects (`address`,
`blocks`, ...) on a `Connection` subclass whose requests

- carry connect/read timeouts no longer than what is left of the call's deadline,
- read the body in small pieces, checking the deadline and a size cap between them,
- turn HTTP and network failures into `OceanError`s with a short, user-safe reason.

`run(fn)` runs one tool's Ocean work (possibly several requests) in a worker
thread and waits for it at most `timeout` seconds, so a server that trickles
its headers cannot hold the caller either. Under eventlet both the worker and
the wait are green and the hub keeps serving other clients; a run's stop ends
the wait in threading mode too (interrupts.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import requests
import urllib3

from interrupts import interrupt_with
from tools.ocean import package

log = logging.getLogger("jellychat.ocean")

PUBLIC_OCEAN = "https://ocean.defichain.com"
PUBLIC_TESTNET_OCEAN = "https://testnet.ocean.jellyfishsdk.com"  # what the package's Ocean() picks
NETWORKS = ("mainnet", "testnet", "regtest")
MAX_BODY_BYTES = 2_000_000
_CHUNK = 16 * 1024


class OceanError(Exception):
    """Ocean could not give an answer; `reason` is safe to show to users."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class OceanNotFound(OceanError):
    """Ocean does not know the thing; `reason` names it ("that block"), or is empty."""


class OceanUnavailable(OceanError):
    """Timeouts, refused connections, 5xx: worth trying again later."""


@dataclass(frozen=True)
class OceanConfig:
    url: str = PUBLIC_OCEAN
    network: str = "mainnet"
    timeout: float = 10.0
    version: str = "v0"

    @classmethod
    def from_settings(cls, settings) -> OceanConfig:
        network = (settings.ocean_network or "mainnet").strip().lower()
        if network not in NETWORKS:
            raise ValueError(f"OCEAN_NETWORK must be one of {', '.join(NETWORKS)}, not {network!r}")
        if settings.ocean_timeout <= 0:
            raise ValueError("OCEAN_TIMEOUT must be a positive number of seconds")
        url = (settings.ocean_url or PUBLIC_OCEAN).strip().rstrip("/")
        if url == PUBLIC_OCEAN and network == "testnet":
            url = PUBLIC_TESTNET_OCEAN
        return cls(url=url, network=network, timeout=float(settings.ocean_timeout))

    @property
    def base_url(self) -> str:
        return f"{self.url}/{self.version}/{self.network}/"


def not_answering(timeout: float) -> str:
    return f"Ocean is not answering right now (no reply within {timeout:g} s)"


def _bounded_connection_class():
    """A subclass of the package's Connection, made once the package is loaded."""
    pkg = package.load()

    class BoundedConnection(pkg.Connection):
        def __init__(self, url: str, deadline: float, timeout: float, max_bytes: int = MAX_BODY_BYTES):
            super().__init__(url, None)
            self._deadline = deadline
            self._timeout = timeout
            self._max_bytes = max_bytes
            self._session.headers.update({"Accept": "application/json", "User-Agent": "JellyChat"})

        def _remaining(self) -> float:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise OceanUnavailable(not_answering(self._timeout))
            return left

        def get(self, data, size=None, next=None):
            sep = "&" if "?" in data else "?"
            query = []
            if size is not None:
                query.append(f"size={size}")
            if next is not None:
                query.append(f"next={next}")
            url = self._url + data + (sep + "&".join(query) if query else "")
            return self._request("GET", url)

        def post(self, method, params):
            raise OceanError("these tools only read from Ocean")

        def _request(self, method: str, url: str):
            try:
                left = self._remaining()
                response = self._session.request(method, url, timeout=(left, left), stream=True)
                try:
                    body = self._read(response)
                finally:
                    response.close()
            except OceanError:
                raise
            # the body is read from urllib3 directly, so its exceptions arrive unwrapped
            except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
                raise OceanUnavailable(not_answering(self._timeout)) from None
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                log.info("Ocean request failed for %s: %s", url, exc)
                raise OceanUnavailable("Ocean is not reachable right now") from None
            return _decode(response.status_code, body)

        def _read(self, response) -> bytes:
            body = bytearray()
            while True:
                self._remaining()
                # read1: return what has arrived (one socket read) instead of waiting for a full chunk
                piece = response.raw.read1(_CHUNK, decode_content=True)
                if not piece:
                    return bytes(body)
                body += piece
                if len(body) > self._max_bytes:
                    raise OceanError("Ocean sent a much larger answer than expected")

    return BoundedConnection


def _decode(status: int, body: bytes):
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if 200 <= status < 300:
        if payload is None:
            raise OceanError("Ocean sent an answer I could not read")
        return payload
    message = ""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        message = str(payload["error"].get("message") or "")[:200]
    if status == 404:
        raise OceanNotFound("")  # the tool says what was not found
    if status >= 500 or status == 429:
        raise OceanUnavailable(f"Ocean has a problem right now (HTTP {status})")
    raise OceanError(f"Ocean rejected the request (HTTP {status}{': ' + message if message else ''})")


class OceanClient:
    """The package's endpoint objects on one bounded connection; one client per tool call."""

    _connection_class = None
    _class_lock = threading.Lock()

    def __init__(self, config: OceanConfig, deadline: float):
        pkg = package.load()
        cls = type(self)
        if cls._connection_class is None:
            with cls._class_lock:
                if cls._connection_class is None:
                    cls._connection_class = _bounded_connection_class()
        self.config = config
        self._conn = cls._connection_class(config.base_url, deadline, config.timeout)
        self.address = pkg.Address(self)
        self.blocks = pkg.Blocks(self)
        self.governance = pkg.Governance(self)
        self.loan = pkg.Loan(self)
        self.masternodes = pkg.Masternodes(self)
        self.poolpairs = pkg.Poolpairs(self)
        self.prices = pkg.Prices(self)
        self.stats = pkg.Stats(self)
        self.tokens = pkg.Tokens(self)
        self.transactions = pkg.Transactions(self)

    def close(self) -> None:
        self._conn._session.close()


def run(config: OceanConfig, work):
    """`work(client)` with every request inside `config.timeout` seconds in total.

    Raises OceanUnavailable when the time is up, even if a request is still
    stuck in the worker; that worker gives up at the shared deadline too.
    """
    deadline = time.monotonic() + config.timeout
    done = threading.Event()
    box: dict = {}

    def worker():
        client = None
        try:
            client = OceanClient(config, deadline)
            box["value"] = work(client)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc
        finally:
            if client is not None:
                client.close()
            done.set()

    threading.Thread(target=worker, name="ocean-call", daemon=True).start()
    # a run's stop or deadline ends the wait too (in threading mode; under eventlet it
    # throws into it): the run then ends as stopped or timed out
    interrupt_with(done.set)
    # a little slack so the worker's own timeout (with its clearer reason) normally wins
    if not done.wait(config.timeout + 0.25) or not box:
        raise OceanUnavailable(not_answering(config.timeout))
    if "error" in box:
        raise box["error"]
    return box["value"]
