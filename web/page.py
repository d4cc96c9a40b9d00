"""The chat page (`GET /`), the embeddable widget (`/widget.js`) and their static files.

Everything the page loads comes from this server (web/static/, with the pinned
client libraries under web/static/vendor/), so it works offline and under a
strict Content-Security-Policy: no inline script or style anywhere.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request, send_from_directory

from web.services import get_settings

bp = Blueprint("page", __name__, static_folder="static", static_url_path="/assets")

# 'self' also covers the page's own ws:// / wss:// origin (CSP level 3)
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors {ancestors}"
)


def origin_allowed(origin: str, allowed: str | list[str]) -> bool:
    """Whether a browser origin may use this server: CORS_ORIGINS is "*" or lists it."""
    return allowed == "*" or origin.rstrip("/") in {o.rstrip("/") for o in allowed}


def socket_origins(settings):
    """Socket.IO's origin check: CORS_ORIGINS, plus the server's own origin so the
    chat page it serves can always connect (engine.io would refuse it otherwise).
    The origin a proxy forwarded (X-Forwarded-Host/-Proto) counts only behind
    PROXY_HOPS proxies: without one, a client could name any origin its own."""
    allowed = settings.cors_origin_list
    if allowed == "*":
        return "*"
    trust_forwarded = settings.proxy_hops > 0  # else anyone may send X-Forwarded-*

    def check(origin, environ):
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        forwarded = environ.get("HTTP_X_FORWARDED_HOST") if trust_forwarded else None
        if forwarded:
            scheme = environ.get("HTTP_X_FORWARDED_PROTO", "https").split(",")[0].strip()
            own_forwarded = f"{scheme}://{forwarded.split(',')[0].strip()}"
        else:
            own_forwarded = own
        return origin in (own, own_forwarded) or origin_allowed(origin, allowed)

    return check


def _with_security_headers(response, embed: bool):
    allowed = get_settings().cors_origin_list
    if not embed:
        ancestors = "'self'"
    elif allowed == "*":
        ancestors = "*"
    else:
        ancestors = " ".join(["'self'", *allowed])
    response.headers["Content-Security-Policy"] = _CSP.format(ancestors=ancestors)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
def index():
    response = send_from_directory(bp.static_folder, "index.html", max_age=0)
    return _with_security_headers(response, embed=request.args.get("embed") == "1")


@bp.get("/widget.js")
def widget():
    response = send_from_directory(bp.static_folder, "widget.js", max_age=300)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/embed/check")
def embed_check():
    """Whether a site (`origin`) may embed the chat, for the widget to tell its owner.

    Readable from any origin on purpose: it reveals only a yes/no for the origin asked.
    """
    origin = (request.args.get("origin") or "").strip()
    origins = get_settings().cors_origin_list
    allowed = origins == "*" or (bool(origin) and origin_allowed(origin, origins))
    body = {"origin": origin, "allowed": allowed}
    if not allowed:
        body["reason"] = (
            f"this JellyChat server does not allow the origin '{origin or '(none)'}': "
            "add it to the server's CORS_ORIGINS setting (comma-separated) and restart it"
        )
    response = jsonify(body)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = "no-store"
    return response
