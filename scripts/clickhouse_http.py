"""A ClickHouse for the tests: the real ClickHouse engine (chDB, ClickHouse in-process) behind
the part of ClickHouse's HTTP interface trails uses.

No ClickHouse server recent enough can be installed on these machines (Debian's is 18.16, older
than table TTL), but chDB ships the current engine as a Python package. SQL is executed by that
engine, so syntax, types, TTL, materialized views and their error messages are ClickHouse's own;
only the HTTP framing is imitated here, after ClickHouse's documentation:

- `GET /ping` answers `Ok.`;
- `POST /` runs the request body (one statement), with `?database=` as the current database and
  `?query=` prepended when given; results in the statement's `FORMAT`, else TabSeparated;
- users log in with HTTP basic auth or `X-ClickHouse-User` / `X-ClickHouse-Key`; a wrong login is
  `Code: 516 ... (AUTHENTICATION_FAILED)` with HTTP 403;
- an error is the text `Code: N. DB::Exception: ...` with the `X-ClickHouse-Exception-Code`
  header, HTTP 400 for syntax errors, 404 for unknown databases and tables, 500 otherwise.

Usage: python clickhouse_http.py PORT DATA_DIR USER PASSWORD
"""

import base64
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from chdb import session

PORT, DATA, USER, PASSWORD = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ENGINE = session.Session(DATA)
LOCK = threading.Lock()
STATUS = {62: 400, 81: 404, 60: 404, 516: 403}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        sys.stderr.write("clickhouse-http: " + (format % args) + "\n")

    def answer(self, status, text, code=None):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        if code is not None:
            self.send_header("X-ClickHouse-Exception-Code", str(code))
        self.end_headers()
        self.wfile.write(body)

    def login(self):
        user = self.headers.get("X-ClickHouse-User")
        key = self.headers.get("X-ClickHouse-Key", "")
        auth = self.headers.get("Authorization", "")
        if user is None and auth.startswith("Basic "):
            user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
        return (user or "default", key) == (USER, PASSWORD)

    def do_GET(self):
        if urlparse(self.path).path == "/ping":
            self.answer(200, "Ok.\n")
        else:
            self.do_POST()

    def do_POST(self):
        url = urlparse(self.path)
        params = parse_qs(url.query)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode() if length else ""
        if not self.login():
            self.answer(
                403,
                "Code: 516. DB::Exception: %s: Authentication failed: password is incorrect, "
                "or there is no user with such name. (AUTHENTICATION_FAILED)\n"
                % (self.headers.get("X-ClickHouse-User") or "default"),
                516,
            )
            return
        query = " ".join(params.get("query", []) + [body]).strip()
        if not query:
            self.answer(400, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)\n", 62)
            return
        database = params.get("database", [None])[0]
        fmt = "TabSeparated"
        found = re.search(r"\bFORMAT\s+(\w+)\s*;?\s*$", query, re.IGNORECASE)
        if found:
            fmt = found.group(1)
            query = query[: found.start()].rstrip()
        with LOCK:
            try:
                if database:
                    ENGINE.query("USE " + database)
                result = ENGINE.query(query, fmt)
                text = result.bytes().decode() if result is not None else ""
            except Exception as error:  # chDB raises its own error type with ClickHouse's text
                message = str(error).strip()
                code = re.match(r"Code: (\d+)", message)
                number = int(code.group(1)) if code else 1002
                self.answer(STATUS.get(number, 500), message + "\n", number)
                return
            finally:
                if database:
                    ENGINE.query("USE default")
        self.answer(200, text)


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
