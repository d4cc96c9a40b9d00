"""A PostgREST-compatible HTTP server for tests, backed by a real PostgreSQL.

It answers what the Supabase store sends (every stored thing is a SQL
function) and what the tests send to show row level security at work, under
`/rest/v1/`:

- `POST`/`GET /rpc/<function>` with named arguments, typed from the catalog
  (scalar, void and set-returning functions; `select=` and `limit=` on sets);
- `GET /<table>?select=a,b&limit=` (the store's startup check and ping);
- `POST /<table>` insert of one object or an array, `Prefer: return=representation|minimal`.

Anything else (filters, ordering, counts, upserts, PATCH, DELETE) is answered
400 PGRST100, so a store that starts to need it fails loudly here.

Every request runs as one transaction of parameterized SQL: identifiers are
checked against the catalog and quoted with `psycopg.sql`, values are always
bind parameters. Results are rendered to JSON by PostgreSQL itself (`json_agg`),
as PostgREST does, so timestamps and jsonb look exactly like the real thing.

Like Supabase (db-max-rows) it returns at most `max_rows` rows per read.
Like Supabase's gateway it rejects a request whose `apikey` header is not the
key it was given (401). The JWT `role` claim of the bearer token selects the
database role (`set local role`) when such a role exists, which lets tests see
row level security act on the anon key. `fail_next()` injects transient
failures (an HTTP status, or a dropped connection) for retry tests.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from storage.supabase import key_role

REST_PREFIX = "/rest/v1/"
RESERVED_PARAMS = {"select", "limit"}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ApiError(Exception):
    """An error answer: HTTP status plus PostgREST's JSON error body."""

    def __init__(self, status: int, code: str, message: str, details=None, hint=None):
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "details": details, "hint": hint, "message": message}


# SQLSTATE (class or full code) -> HTTP status, after PostgREST's table.
SQLSTATE_STATUS = {
    "08": 503, "09": 500, "0L": 403, "0P": 403, "23503": 409, "23505": 409, "23": 400,
    "22": 400, "25006": 405, "25": 500, "28": 403, "2D": 500, "38": 500, "39": 500, "3B": 500,
    "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500, "F0": 500, "HV": 500,
    "P0001": 400, "P0": 500, "XX": 500, "42883": 404, "42P01": 404, "42501": 403, "42": 400,
    "21000": 400,
}


def status_for(sqlstate: str | None) -> int:
    if not sqlstate:
        return 500
    return SQLSTATE_STATUS.get(sqlstate) or SQLSTATE_STATUS.get(sqlstate[:2], 400)


def api_key(role: str, ref: str = "test") -> str:
    """A Supabase-style legacy API key (an unsigned-looking JWT) for `role`."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"iss": "supabase", "ref": ref, "role": role, "iat": 1700000000, "exp": 2000000000}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def split_list(text: str) -> list[str]:
    """Split `a,"b,c",d` on commas outside double quotes; unquote the items."""
    items, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [i.strip() for i in items]


class Catalog:
    """Tables, columns, primary keys and functions of one schema, read from pg_catalog."""

    def __init__(self, pool: ConnectionPool, schema: str):
        self.pool = pool
        self.schema = schema
        self.lock = threading.Lock()
        self.tables: dict[str, list[str]] = {}
        self.primary_keys: dict[str, list[str]] = {}

    def refresh(self) -> None:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "select c.relname, a.attname from pg_attribute a"
                " join pg_class c on c.oid = a.attrelid"
                " join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = %s and c.relkind in ('r', 'v', 'm', 'p', 'f')"
                " and a.attnum > 0 and not a.attisdropped order by c.relname, a.attnum",
                (self.schema,),
            ).fetchall()
            keys = conn.execute(
                "select c.relname, a.attname from pg_index i"
                " join pg_class c on c.oid = i.indrelid"
                " join pg_namespace n on n.oid = c.relnamespace"
                " join pg_attribute a on a.attrelid = c.oid and a.attnum = any(i.indkey)"
                " where n.nspname = %s and i.indisprimary order by c.relname, a.attnum",
                (self.schema,),
            ).fetchall()
        tables: dict[str, list[str]] = {}
        for table, column in rows:
            tables.setdefault(table, []).append(column)
        primary: dict[str, list[str]] = {}
        for table, column in keys:
            primary.setdefault(table, []).append(column)
        with self.lock:
            self.tables, self.primary_keys = tables, primary

    def columns(self, table: str) -> list[str]:
        if table not in self.tables:
            self.refresh()  # created since the last look (migrations run after start)
        if table not in self.tables:
            raise ApiError(404, "PGRST205",
                           f"Could not find the table '{self.schema}.{table}' in the schema cache")
        return self.tables[table]

    def function(self, conn, name: str, given: set[str]) -> dict:
        """The overload of `name` whose named IN arguments fit the `given` names."""
        rows = conn.execute(
            "select p.proretset, rt.typname, rt.typtype, coalesce(p.proargnames, '{}'),"
            " coalesce(p.proargmodes::text[], '{}'),"
            " array(select format_type(t, null)"
            "       from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) t),"
            " p.pronargdefaults, p.pronargs"
            " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " join pg_type rt on rt.oid = p.prorettype"
            " where n.nspname = %s and p.proname = %s and p.prokind = 'f'",
            (self.schema, name),
        ).fetchall()
        for retset, rettype, typtype, names, modes, types, ndefaults, nargs in rows:
            modes = list(modes) or ["i"] * len(types)
            args = [(n, t) for n, m, t in zip(names, modes, types, strict=False) if m in ("i", "b", "v")]
            out = [n for n, m in zip(names, modes, strict=False) if m in ("o", "b", "t")]
            arg_names = [n for n, _ in args]
            required = set(arg_names[: nargs - ndefaults])
            if given <= set(arg_names) and required <= given:
                return {"args": [(n, t) for n, t in args if n in given], "set": retset,
                        "rettype": rettype, "typtype": typtype, "out": out}
        raise ApiError(
            404, "PGRST202",
            f"Could not find the function {self.schema}.{name}({', '.join(sorted(given))})"
            " in the schema cache",
        )


class PostgrestServer:
    """Serve PostgREST's API for `dsn` on 127.0.0.1 (a free port) until `stop()`."""

    def __init__(self, dsn: str, key: str, *, schema: str = "public", port: int = 0,
                 max_rows: int | None = 1000):
        self.dsn = dsn
        self.key = key
        self.schema = schema
        self.max_rows = max_rows  # Supabase's default cap on the rows of one answer
        self.pool = ConnectionPool(dsn, min_size=1, max_size=8, kwargs={"autocommit": True},
                                   open=False)
        self.catalog = Catalog(self.pool, schema)
        self.requests: list[tuple[str, str]] = []
        self._failures: deque[int] = deque()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        """The project URL, as SUPABASE_URL would hold it."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PostgrestServer:
        self.pool.open(wait=True, timeout=30)
        self.catalog.refresh()
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="postgrest-test-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.pool.close()

    def __enter__(self) -> PostgrestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (0: drop the connection)."""
        with self._lock:
            self._failures.extend([status] * count)

    def take_failure(self) -> int | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def record(self, method: str, target: str) -> None:
        with self._lock:
            self.requests.append((method, target))

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()


def _handler_for(server: PostgrestServer):
    class Handler(_Handler):
        api = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    api: PostgrestServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    # plumbing
    def _send(self, status: int, body: bytes | None = None, headers: dict | None = None,
              content_type: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None and status != 204:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", "0" if body is None else str(len(body)))
        self.end_headers()
        if body is not None and status != 204:
            self.wfile.write(body)

    def _send_error(self, error: ApiError) -> None:
        self._send(error.status, json.dumps(error.body).encode())

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        self.api.record(method, self.path)
        failure = self.api.take_failure()
        if failure == 0:
            self.close_connection = True
            self.connection.shutdown(2)  # no answer at all: a transport error for the client
            return
        if failure:
            self._send(failure, json.dumps({"message": f"injected failure {failure}"}).encode())
            return
        parts = urlsplit(self.path)
        if not parts.path.startswith(REST_PREFIX):
            self._send(404, b"<html><body>not found</body></html>", content_type="text/html")
            return
        if self.headers.get("apikey") != self.api.key:
            self._send_error(ApiError(401, "", "Invalid API key",
                                      hint="Double check your Supabase `anon` or `service_role` API key."))
            return
        profile = self.headers.get("Content-Profile" if method == "POST" else "Accept-Profile",
                                   self.api.schema)
        if profile != self.api.schema:
            self._send_error(ApiError(406, "PGRST106", f"Invalid schema: {profile}",
                                      hint=f"Only the following schemas are exposed: {self.api.schema}"))
            return
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            self._send_error(ApiError(400, "PGRST102", "Empty or invalid json"))
            return
        auth = self.headers.get("Authorization", "")
        role = key_role(auth[7:]) if auth.startswith("Bearer ") else None
        request = _Request(self.api, method, unquote(parts.path[len(REST_PREFIX):]),
                           parse_qsl(parts.query, keep_blank_values=True), self.headers, body, role)
        try:
            status, payload, headers = request.run()
        except ApiError as error:
            self._send_error(error)
            return
        except psycopg.Error as exc:
            diag = exc.diag
            status = status_for(exc.sqlstate)
            if exc.sqlstate == "42501" and role == "anon":
                status = 401  # PostgREST: insufficient privilege of an anonymous request
            self._send_error(ApiError(status, exc.sqlstate or "",
                                      diag.message_primary or str(exc), diag.message_detail,
                                      diag.message_hint))
            return
        except Exception as exc:  # noqa: BLE001 - a bug in this server: answer, don't hang up
            self._send_error(ApiError(500, "TEST", f"test server error: {exc!r}"))
            return
        self._send(status, payload, headers)


class _Request:
    """One PostgREST request turned into one SQL statement."""

    def __init__(self, api: PostgrestServer, method, path, params, headers, body, role):
        self.api = api
        self.method = method
        self.path = path
        self.params = params
        self.body = body
        self.role = role
        self.prefer = {}
        for item in ",".join(headers.get_all("Prefer") or []).split(","):
            name, _, value = item.strip().partition("=")
            if name:
                self.prefer[name] = value
        self.schema = api.schema

    # helpers
    def param(self, name: str) -> str | None:
        values = [v for k, v in self.params if k == name]
        return values[-1] if values else None

    def table_ident(self, table: str) -> sql.Composable:
        return sql.Identifier(self.schema, table)

    def check_column(self, column: str, columns: list[str], where: str) -> str:
        column = column.strip()
        if len(column) >= 2 and column[0] == column[-1] == '"':
            column = column[1:-1]
        if column not in columns:
            raise ApiError(400, "42703", f"column {where}.{column} does not exist")
        return column

    def select_list(self, columns: list[str], where: str) -> sql.Composable:
        text = self.param("select") or "*"
        items = []
        for item in split_list(text):
            if item == "*":
                items.append(sql.SQL("_s.*"))
                continue
            alias, _, column = item.rpartition(":")
            column = self.check_column(column, columns, where)
            alias = alias or column
            if not NAME.match(alias):
                raise ApiError(400, "PGRST100", f"unsupported select item {item!r}")
            items.append(sql.SQL("{} as {}").format(sql.Identifier("_s", column), sql.Identifier(alias)))
        return sql.SQL(", ").join(items)

    def no_filters(self) -> None:
        for key, _ in self.params:
            if key not in RESERVED_PARAMS:
                raise ApiError(400, "PGRST100", f"the test server does not support {key!r}"
                               " (the store calls SQL functions)")

    def int_param(self, name: str) -> int | None:
        value = self.param(name)
        if value is None:
            return None
        if not value.isdigit():
            raise ApiError(400, "PGRST100", f"{name} must be a non-negative integer")
        return int(value)

    # dispatch
    def run(self):
        with self.api.pool.connection() as conn, conn.transaction():
            if self.role:
                exists = conn.execute("select 1 from pg_roles where rolname = %s", (self.role,)).fetchone()
                if exists:
                    conn.execute(sql.SQL("set local role {}").format(sql.Identifier(self.role)))
            if self.path.startswith("rpc/"):
                return self.rpc(conn, self.path[4:])
            if not NAME.match(self.path):
                raise ApiError(404, "PGRST125", f"Invalid path specified in request URL: {self.path}")
            if self.method == "GET":
                return self.read(conn, self.path)
            return self.insert(conn, self.path)

    def render(self, conn, source: sql.Composable, args: list, columns: list[str], where: str):
        """Select from `source` (a relation or subquery aliased _s) with `select` and `limit`."""
        self.no_filters()
        selection = self.select_list(columns, where)
        limit = self.int_param("limit")
        if self.api.max_rows is not None:
            limit = self.api.max_rows if limit is None else min(limit, self.api.max_rows)
        rows_sql = sql.SQL("select {} from {} _s").format(selection, source)
        if limit is not None:
            rows_sql += sql.SQL(" limit %s")
            args = [*args, limit]
        body, returned = conn.execute(
            sql.SQL("select coalesce(json_agg(_t), '[]')::text, count(*) from ({}) _t").format(rows_sql),
            args,
        ).fetchone()
        return body.encode(), {"Content-Range": f"0-{returned - 1}/*" if returned else "*/*"}

    def read(self, conn, table: str):
        columns = self.api.catalog.columns(table)
        body, headers = self.render(conn, self.table_ident(table), [], columns, table)
        return 200, body, headers

    def insert(self, conn, table: str):
        self.no_filters()
        columns = self.api.catalog.columns(table)
        rows = self.body if isinstance(self.body, list) else [self.body]
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise ApiError(400, "PGRST102", "the body must be an object or an array of objects")
        if "resolution" in self.prefer or "missing" in self.prefer:
            raise ApiError(400, "PGRST100", "the test server does not support upserts or defaults")
        names = [self.check_column(n, columns, table) for n in dict.fromkeys(k for r in rows for k in r)]
        target = sql.SQL(", ").join(map(sql.Identifier, names))
        statement = sql.SQL(
            "insert into {table} as _tbl ({target}) select {target} from"
            " json_populate_recordset(null::{table}, %s::json) _r returning _tbl.*"
        ).format(table=self.table_ident(table), target=target)
        body, count = conn.execute(
            sql.SQL("with _w as ({}) select coalesce(json_agg(_t), '[]')::text, count(*) from"
                    " (select {} from _w _s) _t").format(statement, self.select_list(columns, table)),
            [json.dumps(rows)],
        ).fetchone()
        headers = {"Content-Range": f"0-{count - 1}/*" if count else "*/*"}
        if self.prefer.get("return") == "representation":
            return 201, body.encode(), headers
        return 201, None, headers

    def rpc(self, conn, name: str):
        if not NAME.match(name):
            raise ApiError(404, "PGRST202", f"Could not find the function {name}")
        if self.method == "GET":
            arguments = {k: v for k, v in self.params if k not in RESERVED_PARAMS}
            self.params = [(k, v) for k, v in self.params if k in RESERVED_PARAMS]
        elif self.method == "POST":
            arguments = self.body or {}
            if not isinstance(arguments, dict):
                raise ApiError(400, "PGRST102", "rpc arguments must be a JSON object")
        else:
            raise ApiError(405, "PGRST101", "only GET and POST may call functions")
        function = self.api.catalog.function(conn, name, set(arguments))
        record = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                                    for n, t in function["args"])
        call = sql.SQL("{}({})").format(
            sql.Identifier(self.schema, name),
            sql.SQL(", ").join(sql.SQL("{} => _a.{}").format(sql.Identifier(n), sql.Identifier(n))
                               for n, _ in function["args"]),
        )
        args_source = (sql.SQL("json_to_record(%s::json) as _a({})").format(record)
                       if function["args"] else sql.SQL("(select) _a"))
        args = [json.dumps(arguments)] if function["args"] else []
        if function["set"] or function["typtype"] == "c":
            columns = function["out"] or self.api.catalog.columns(function["rettype"])
            source = sql.SQL("(select _f.* from {}, lateral {} _f)").format(args_source, call)
            body, headers = self.render(conn, source, args, columns, name)
            if not function["set"]:
                rows = json.loads(body)
                body = json.dumps(rows[0] if rows else None).encode()
            return 200, body, headers
        for key, _ in self.params:
            if key != "select":
                raise ApiError(400, "PGRST100", "a scalar function result cannot be filtered")
        if function["rettype"] == "void":
            conn.execute(sql.SQL("select {} from {}").format(call, args_source), args)
            return 204, None, {}
        value = conn.execute(sql.SQL("select to_json({})::text from {}").format(call, args_source),
                             args).fetchone()[0]
        return 200, (value or "null").encode(), {}
