"""Rate limits, quotas and the proof-of-work gate, the same for every transport.

`Limits` is built once in `create_app` (`init_app`) and handed to the chat
service, which calls `admit()` on every turn after validation and before the
run is created: turns per moving window per user token and per client address
(the `limits` library; its storage is memory for one process, Redis for
several: RATE_LIMIT_STORAGE), and, when POW_REQUIRED, a solved ALTCHA
challenge the first time in a conversation. Every other endpoint that writes or
costs declares its limit in one line, `@limit("name")`, read from the
settings RATE_LIMIT_<NAME>_PER_TOKEN and RATE_LIMIT_<NAME>_PER_ADDRESS (the same
storage, so one bucket across processes with Redis). Concurrent runs per user are
capped by the database itself (a trigger on runs, MAX_ACTIVE_RUNS_PER_USER),
so every process sees the same count. Refusals raise `storage.RateLimited`
(429 with Retry-After, or an `error` event with `retry_after`) or
`InvalidInput` on the `pow` field.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import logging
import math
import secrets
import time
from datetime import UTC, datetime, timedelta

from altcha.v1 import create_challenge, verify_solution
from flask import Blueprint, Flask, current_app, jsonify, request
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from agent.turn import InvalidInput
from compat import memory_storage
from storage import RateLimited
from web.input import parse_json_body

log = logging.getLogger("jellychat.limits")

ISSUED_CACHE = 100_000  # issued tokens remembered per process (a token, once issued, stays so)
MAX_POW_CHARS = 2000  # a solved ALTCHA payload is a few hundred characters
REDIS_TIMEOUT = 0.5  # seconds
POW_VALID_FOR = 24 * 3600  # seconds a conversation stays open after its proof of work


class UnknownToken(PermissionError):
    """REQUIRE_SERVER_TOKENS=1 and the user token was not issued by POST /users (401)."""


def _limits_of(value: str):
    return [] if value == "0" else parse_many(value)


class ProofOfWork:
    """ALTCHA (v1: SHA-256 over salt + number, HMAC-signed): challenges, and
    verification of solved ones, each accepted once (marked in the limiter's storage,
    so a replay to another process fails too when that storage is Redis)."""

    def __init__(self, storage, hmac_key: str, max_number: int, expires: float):
        self.storage = storage
        self.hmac_key = hmac_key or secrets.token_hex(32)
        self.max_number = max_number
        self.expires = expires

    def challenge(self) -> dict:
        """The JSON an ALTCHA widget's `challengeurl` answers."""
        expires = datetime.now(UTC) + timedelta(seconds=self.expires)
        return create_challenge(hmac_key=self.hmac_key, max_number=self.max_number,
                                expires=expires).to_dict()

    def verify(self, proof) -> None:
        """InvalidInput unless `proof` (the widget's base64 payload, or its JSON object)
        solves a challenge of ours that has not expired nor been used."""
        payload = _decode(proof)
        try:
            ok, _reason = verify_solution(payload, self.hmac_key, check_expires=True)
        except (AttributeError, TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidInput("pow", "'pow' is not a solved, unexpired challenge from "
                                      "GET /pow/challenge")
        if self.storage.incr(f"jelly-pow-used/{payload['signature']}",
                             int(self.expires) + 60) > 1:
            raise InvalidInput("pow", "'pow' was already used: solve a new challenge")


def _decode(proof) -> dict:
    if isinstance(proof, str):
        if len(proof) > MAX_POW_CHARS:
            raise InvalidInput("pow", "'pow' is too long")
        try:
            proof = json.loads(base64.b64decode(proof, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput("pow", "'pow' is not a base64 ALTCHA payload") from None
    if not isinstance(proof, dict):
        raise InvalidInput("pow", "'pow' must be the solved challenge (base64 or an object)")
    fields = {"algorithm": str, "challenge": str, "salt": str, "signature": str}
    if any(not isinstance(proof.get(k), t) or len(proof[k]) > 500 for k, t in fields.items()):
        raise InvalidInput("pow", "'pow' lacks algorithm, challenge, salt or signature")
    number = proof.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 10**12:
        raise InvalidInput("pow", "'pow' needs the number that solves the challenge")
    return {k: proof[k] for k in ("algorithm", "challenge", "number", "salt", "signature")}


def client_key(address: str) -> str:
    """The address a limit counts: IPv6 clients by their /64 (one subscriber's network
    hands out many addresses), IPv4 ones by address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Limits:
    """Admission of turns: rate limits by token and by address, and the proof of work."""

    def __init__(self, settings):
        options = {}
        if settings.rate_limit_storage.startswith(("redis://", "rediss://")):
            # a Redis that does not answer costs a turn half a second, not a hang
            options = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
        if settings.rate_limit_storage.startswith("memory://"):
            self.storage = memory_storage(settings.rate_limit_storage)  # compat.py
        else:
            self.storage = storage_from_string(settings.rate_limit_storage, **options)
        self._warned = 0.0
        self.settings = settings
        self._endpoints: dict[str, tuple[list, list]] = {}
        self._issued: set[str] = set()
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.per_token = _limits_of(settings.rate_limit_turns_per_token)
        self.per_address = _limits_of(settings.rate_limit_turns_per_address)
        self.pow = None
        if settings.pow_required:
            self.pow = ProofOfWork(self.storage, settings.pow_hmac_key, settings.pow_max_number,
                                   settings.pow_expires)
            if not settings.pow_hmac_key:
                log.warning("POW_REQUIRED without POW_HMAC_KEY: challenges are signed with a "
                            "key of this process only (set one when several processes serve)")

    def admit(self, token: str, address: str | None, conversation_id: str | None,
              proof=None, *, check_pow: bool = True) -> None:
        """Count one turn, or raise RateLimited / InvalidInput('pow'); a turn refused
        here is not counted."""
        checks = [(item, "user_token", token) for item in self.per_token]
        if address:
            checks += [(item, "address", client_key(address)) for item in self.per_address]
        try:
            for item, scope, key in checks:
                if not self.limiter.test(item, "jelly-turns", scope, key):
                    reset = self.limiter.get_window_stats(item, "jelly-turns", scope, key).reset_time
                    raise RateLimited(
                        f"too many messages (at most {item} per {scope.replace('_', ' ')}); "
                        "try again later", math.ceil(reset - time.time()), scope)
            if self.pow is not None and check_pow:
                self._check_pow(token, conversation_id, proof)
            for item, scope, key in checks:
                self.limiter.hit(item, "jelly-turns", scope, key)
        except (RateLimited, InvalidInput):
            raise
        except Exception as exc:  # noqa: BLE001 - a limiter storage outage must not stop chat
            if time.monotonic() - self._warned > 30:  # one line per 30 s, not one per turn
                self._warned = time.monotonic()
                log.warning("rate limit storage failed, turns admitted unchecked: %s", exc)

    def require_issued(self, store, token) -> None:
        """With REQUIRE_SERVER_TOKENS, raise UnknownToken unless the server issued
        `token` (asked of the database once per token and process). A token that is
        not a string is left to the endpoint's own validation."""
        if not self.settings.require_server_tokens or not isinstance(token, str) or not token:
            return
        if token in self._issued:
            return
        if not store.token_issued(token):
            raise UnknownToken("this user_token was not issued by this server: get one from "
                               "POST /users")
        if len(self._issued) >= ISSUED_CACHE:
            self._issued.clear()
        self._issued.add(token)

    def endpoint_limits(self, name: str) -> tuple[list, list]:
        """(per token, per address) limits of endpoint `name`, from its settings."""
        if name not in self._endpoints:
            fields = [f"rate_limit_{name}_per_token", f"rate_limit_{name}_per_address"]
            if not any(hasattr(self.settings, f) for f in fields):
                raise KeyError(f"no setting RATE_LIMIT_{name.upper()}_PER_TOKEN or _PER_ADDRESS")
            self._endpoints[name] = tuple(_limits_of(getattr(self.settings, f, "0")) for f in fields)
        return self._endpoints[name]

    def hit(self, name: str, token: str | None, address: str | None) -> None:
        """Count one request to endpoint `name`, or raise RateLimited (not counted then).
        A limiter storage outage lets it through, as for turns."""
        per_token, per_address = self.endpoint_limits(name)
        checks = [(item, "user_token", token) for item in per_token if token]
        if address:
            checks += [(item, "address", client_key(address)) for item in per_address]
        bucket = f"jelly-{name}"
        try:
            for item, scope, key in checks:
                if not self.limiter.test(item, bucket, scope, key):
                    reset = self.limiter.get_window_stats(item, bucket, scope, key).reset_time
                    raise RateLimited(
                        f"too many requests to {request_name(name)} (at most {item} per "
                        f"{scope.replace('_', ' ')}); try again later",
                        math.ceil(reset - time.time()), scope)
            for item, scope, key in checks:
                self.limiter.hit(item, bucket, scope, key)
        except RateLimited:
            raise
        except Exception as exc:  # noqa: BLE001 - a limiter storage outage must not stop the API
            if time.monotonic() - self._warned > 30:
                self._warned = time.monotonic()
                log.warning("rate limit storage failed, requests admitted unchecked: %s", exc)

    def _check_pow(self, token: str, conversation_id: str | None, proof) -> None:
        opened = f"jelly-pow-open/{token}/{conversation_id or 'default'}"
        if self.storage.get(opened):
            return
        if proof is None:
            raise InvalidInput("pow", "this conversation needs a solved proof-of-work challenge "
                                      "('pow'): GET /pow/challenge")
        self.pow.verify(proof)
        self.storage.incr(opened, POW_VALID_FOR)


def request_name(name: str) -> str:
    return name.replace("_", " ")


def request_token() -> str | None:
    """The caller's user token as REST sends it: X-User-Token, else `user_token` in a
    JSON body (None when neither; validation comes later, in the view)."""
    token = request.headers.get("X-User-Token")
    if token is None and request.is_json:
        try:  # checked as every body is: deep nesting is a 400 of the view's, not a 500 here
            body = parse_json_body()
        except (InvalidInput, HTTPException):
            body = None
        token = body.get("user_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) and token else None


def limit(name: str, token=request_token):
    """Declare a view's rate limit in one line:

        @bp.post("/conversations", ...)
        @limit("conversations")
        def create_conversation(...): ...

    Counts each request per user token (`token()`, default: X-User-Token or the body's
    `user_token`) and per client address against the settings
    RATE_LIMIT_<NAME>_PER_TOKEN / RATE_LIMIT_<NAME>_PER_ADDRESS (add them to
    settings.py; a missing one means no limit of that kind, neither means a
    KeyError at the first request). Over the limit: 429 with Retry-After.
    """

    def decorate(view):
        @functools.wraps(view)
        def limited(*args, **kwargs):
            limits = current_app.extensions.get("jellychat.limits")
            if limits is not None:
                limits.hit(name, token(), request.remote_addr)
            return view(*args, **kwargs)

        return limited

    return decorate


bp = Blueprint("limits", __name__)


@bp.get("/pow/challenge")
def pow_challenge():
    """An ALTCHA challenge (404 when POW_REQUIRED is off: nothing asks for one)."""
    limits: Limits = current_app.extensions["jellychat.limits"]
    if limits.pow is None:
        return jsonify({"error": "proof of work is not required here (POW_REQUIRED=0)"}), 404
    response = jsonify(limits.pow.challenge())
    response.headers["Cache-Control"] = "no-store"
    return response


def rate_limited(exc: RateLimited):
    response = jsonify({"error": str(exc), "retry_after": exc.retry_after, "limit": exc.scope})
    response.headers["Retry-After"] = str(exc.retry_after)
    return response, 429


def unknown_token(exc: UnknownToken):
    return jsonify({"error": str(exc), "field": "user_token"}), 401


def init_app(app: Flask, settings) -> Limits:
    """Build the limits, register the challenge route and the 429 answer; trust
    PROXY_HOPS proxies' X-Forwarded-For for the client address."""
    limits = Limits(settings)
    app.extensions["jellychat.limits"] = limits
    app.register_blueprint(bp)
    app.register_error_handler(RateLimited, rate_limited)
    app.register_error_handler(UnknownToken, unknown_token)
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)
    return limits
