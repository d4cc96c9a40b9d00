"""Rate limits, quotas and the proof-of-work gate, the same for every transport.

`Limits` is built once in `create_app` (`init_app`) and handed to the chat
service, which calls `admit()` on every turn after validation and before the
run is created: turns per moving window per user token and per client address
(the `limits` library; its storage is memory for one process, Redis for
several: RATE_LIMIT_STORAGE), and, when POW_REQUIRED, a solved ALTCHA
challenge the first time in a conversation. Concurrent runs per user are
capped by the database itself (a trigger on runs, MAX_ACTIVE_RUNS_PER_USER),
so every process sees the same count. Refusals raise `storage.RateLimited`
(429 with Retry-After, or an `error` event with `retry_after`) or
`InvalidInput` on the `pow` field.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import math
import secrets
import time
from datetime import UTC, datetime, timedelta

from altcha.v1 import create_challenge, verify_solution
from flask import Blueprint, Flask, current_app, jsonify
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.middleware.proxy_fix import ProxyFix

from agent.turn import InvalidInput
from compat import memory_storage
from storage import RateLimited

log = logging.getLogger("jellychat.limits")

MAX_POW_CHARS = 2000  # a solved ALTCHA payload is a few hundred characters
REDIS_TIMEOUT = 0.5  # seconds
POW_VALID_FOR = 24 * 3600  # seconds a conversation stays open after its proof of work


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

    def _check_pow(self, token: str, conversation_id: str | None, proof) -> None:
        opened = f"jelly-pow-open/{token}/{conversation_id or 'default'}"
        if self.storage.get(opened):
            return
        if proof is None:
            raise InvalidInput("pow", "this conversation needs a solved proof-of-work challenge "
                                      "('pow'): GET /pow/challenge")
        self.pow.verify(proof)
        self.storage.incr(opened, POW_VALID_FOR)


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


def init_app(app: Flask, settings) -> Limits:
    """Build the limits, register the challenge route and the 429 answer; trust
    PROXY_HOPS proxies' X-Forwarded-For for the client address."""
    limits = Limits(settings)
    app.extensions["jellychat.limits"] = limits
    app.register_blueprint(bp)
    app.register_error_handler(RateLimited, rate_limited)
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)
    return limits
