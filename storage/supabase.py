"""Store on a Supabase project through supabase-py (its PostgREST API).

Chosen when SUPABASE_URL and SUPABASE_KEY are set and DATABASE_URL is not.
The schema comes from the same files in supabase/migrations/ (`supabase db
push`); PostgREST runs each request as its own transaction, so the writes that
must be atomic (a new user with its greeting, a whole answer) are SQL functions
from those migrations, called with `rpc(...)`.

Keys. The server must use the service-role (secret) key. The anon
(publishable) key is meant to be shipped inside web pages, i.e. it is public;
every table has row level security with no policy for anon, so that a visitor
holding it reads nobody's chats. With that key the server could not work
either, so it is refused at startup unless SUPABASE_ALLOW_ANON=1 (for a project
that grants anon its own policies on purpose). Keys never appear in messages.

Errors. Connection errors, HTTP 429 and 5xx are Transient and retried with
exponential backoff by the Store's one retry policy (`Store._retry`), at most
`attempts` times within `retry_budget` seconds; writes that must not run twice
are retried only when the request cannot have reached the database (connection
refused, 429, 503). What remains becomes a one-line `StoreError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from storage.base import Store, StoreError, Transient

try:
    import httpx

    import supabase
except ImportError:  # pragma: no cover - guarded driver import
    supabase = None

API_VERSION = 3  # what `jelly_api_version()` of our migrations must answer (at least)
RETRY_STATUSES = {429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
NOT_PROCESSED_STATUSES = {429, 503}  # the database never saw the request
MIGRATE_HINT = ("apply supabase/migrations to the project (`supabase db push`, or paste the output"
                " of `flask --app app db sql` into the SQL editor)")


def key_role(key: str) -> str | None:
    """The role a Supabase API key stands for, read without verifying it.

    Legacy keys are JWTs whose payload carries a `role` claim (`anon` or
    `service_role`); the newer opaque keys say it in their prefix.
    """
    if key.startswith("sb_publishable_"):
        return "anon"
    if key.startswith("sb_secret_"):
        return "service_role"
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    role = claims.get("role") if isinstance(claims, dict) else None
    return role if isinstance(role, str) else None


class HTTPStatusError(Exception):
    """An HTTP error answer, raised by the response hook so its status is not lost."""

    def __init__(self, status: int, body: dict | None, text: str):
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        self.code = str(self.body.get("code") or "")
        self.text = self.body.get("message") or " ".join(text.split())[:200]
        super().__init__(f"HTTP {status}: {self.text}")


# what a request can end with once its retries are over
FAILURES: tuple[type[Exception], ...] = (
    (HTTPStatusError, httpx.HTTPError, supabase.PostgrestAPIError) if supabase else (HTTPStatusError,)
)


def _raise_for_status(response) -> None:
    if response.status_code < 400:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        body = None
    raise HTTPStatusError(response.status_code, body, response.text)


def _unsent(exc: BaseException) -> bool:
    """True when the request cannot have reached the database."""
    if isinstance(exc, HTTPStatusError):
        return exc.status in NOT_PROCESSED_STATUSES
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _transient(exc: BaseException) -> bool:
    """True when another try may succeed."""
    if isinstance(exc, HTTPStatusError):
        return exc.status in RETRY_STATUSES
    return isinstance(exc, httpx.TransportError)


class SupabaseStore(Store):
    name = "supabase"

    def __init__(
        self,
        url: str,
        key: str,
        allow_anon: bool = False,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        retry_budget: float = 10.0,
        backoff: float = 0.25,
        keepalive: float = 60.0,
    ):
        """`keepalive`: seconds an idle connection to the project is kept for the next
        request (httpx's 5 s made a turn after a person's pause open a new TLS
        connection for its run's first call; SUPABASE_KEEPALIVE)."""
        super().__init__()
        if supabase is None:
            raise StoreError("the Supabase backend needs supabase-py: pip install -r requirements.txt")
        if not url or not key:
            raise StoreError("the Supabase backend needs both SUPABASE_URL and SUPABASE_KEY")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StoreError(f"SUPABASE_URL must be the project's https URL, not {self._safe(url, key)!r}")
        self.role = key_role(key)
        if self.role == "anon" and not allow_anon:
            raise StoreError(
                "SUPABASE_KEY is the project's anon (publishable) key, which is public and cannot "
                "read the chat tables (row level security): use the service-role (secret) key, "
                "or set SUPABASE_ALLOW_ANON=1 if your policies grant anon access on purpose"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.retry_budget = retry_budget
        self.backoff = backoff
        self.keepalive = keepalive
        self.__key = key
        self._http = None
        self._client = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SupabaseStore({self.url!r})"

    @staticmethod
    def _safe(text: str, key: str) -> str:
        return text.replace(key, "***") if key else text

    # plumbing
    @property
    def client(self):
        """The supabase-py client, made on first use (one per store, shared by all threads)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self):
        self._http = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20,
                                keepalive_expiry=self.keepalive),
            follow_redirects=True,
            event_hooks={"response": [_raise_for_status]},
        )
        options = supabase.ClientOptions(
            httpx_client=self._http,
            postgrest_client_retry=False,  # we retry, bounded (Store._retry)
            auto_refresh_token=False,
            persist_session=False,
        )
        try:
            return supabase.create_client(self.url, self.__key, options)
        except supabase.SupabaseException as exc:
            raise StoreError(f"cannot create the Supabase client: {self._safe(exc.message, self.__key)}"
                             ) from None

    def _once(self, what: str, request: Callable):
        """Execute `request()` (a postgrest builder) once; what fails becomes Transient
        (another try may succeed) or StoreError, one line that names `what`."""
        try:
            return request().execute()
        except HTTPStatusError as exc:
            if exc.code.startswith("JL"):
                raise self.function_error(exc.code, exc.text, exc.body.get("details")) from None
            raise self._failure(what, exc) from exc
        except FAILURES as exc:
            raise self._failure(what, exc) from exc

    def _failure(self, what: str, exc: BaseException) -> StoreError:
        reason = self._describe(exc)
        message = f"Supabase {what} failed: {reason}"
        error = (Transient(message, sent=not _unsent(exc)) if _transient(exc) or _unsent(exc)
                 else StoreError(message))
        error.reason = reason
        return error

    def _call(self, what: str, request: Callable, *, idempotent: bool, attempts: int | None = None):
        """`request()` executed under the Store's retry policy."""
        return self._retry(what, lambda: self._once(what, request), idempotent=idempotent,
                           attempts=attempts)

    def _describe(self, exc: BaseException) -> str:
        """One line about `exc`, that never contains the key."""
        if isinstance(exc, HTTPStatusError):
            if exc.status in (401, 403) and not exc.code.startswith("42"):
                text = (f"the key was rejected (HTTP {exc.status}: {exc.text}); SUPABASE_KEY must be "
                        "the project's service-role (secret) key")
            elif exc.code in ("PGRST202", "PGRST205", "42883", "42P01"):
                text = f"the database lacks part of the schema ({exc.text}): {MIGRATE_HINT}"
            elif exc.status == 404:
                text = f"no Supabase REST API at {self.url} (HTTP 404): check SUPABASE_URL"
            else:
                code = f" {exc.code}" if exc.code else ""
                text = f"HTTP {exc.status}{code}: {exc.text}"
        elif isinstance(exc, httpx.TimeoutException):
            text = f"no answer from {self.url} within {self.timeout:g} s"
        elif isinstance(exc, httpx.TransportError):
            reason = " ".join(str(exc).split()) or type(exc).__name__
            text = f"cannot reach {self.url}: {reason}"
        else:
            text = " ".join(str(exc).split()) or type(exc).__name__
        return self._safe(text, self.__key)

    # lifecycle
    def initialize(self) -> None:
        """Check URL, key and schema with two cheap requests; StoreError says what is wrong."""
        try:
            self._call("startup check", lambda: self.client.table("users").select("id").limit(1),
                       idempotent=True)
            version = self._call("startup check", lambda: self.client.rpc("jelly_api_version"),
                                 idempotent=True).data
        except StoreError as exc:
            reason = getattr(exc, "reason", str(exc))
            raise StoreError(f"cannot use Supabase at {self.url}: {reason}") from None
        if not isinstance(version, int) or version < API_VERSION:
            raise StoreError(f"the Supabase database has an older JellyChat schema: {MIGRATE_HINT}")
        if self.role not in ("service_role", None):
            self.logger.warning("SUPABASE_KEY has role %r, not service_role", self.role)
        self.logger.info("using Supabase at %s", self.url)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = self._client = None

    def ping(self) -> bool:
        """One request, no retries: a health check must answer within its own timeout."""
        try:
            self._call("ping", lambda: self.client.table("users").select("id").limit(1),
                       idempotent=True, attempts=1)
        except StoreError:
            return False
        return True

    def _invoke(self, name, params):
        return self._once(name, lambda: self.client.rpc(name, params)).data
