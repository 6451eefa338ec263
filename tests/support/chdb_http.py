#!/usr/bin/env python3
"""Test fixture: ClickHouse's HTTP interface in front of the real ClickHouse engine (chdb-core).

chdb runs ClickHouse in-process and cannot start its own HTTP listener, so this speaks the HTTP
protocol on its behalf, as the Rust `clickhouse` crate uses it (docs: interfaces/http):
  * the query in the `query` URL parameter or the POST body; with both, the body follows the
    query (for `INSERT … FORMAT X` the body is the data);
  * `database`, settings and `param_<name>` query parameters as URL parameters;
  * results in whatever `FORMAT` the query names (RowBinaryWithNamesAndTypes for the crate);
  * errors as HTTP 500 with the body `Code: N. DB::Exception: …` and `X-ClickHouse-Exception-Code`.
ClickHouse's native LZ4 block compression (`compress=1`/`decompress=1`) is refused with a clear
error: tests run the collector with `--clickhouse-compression=none`.

Never shipped; tests only. Usage: chdb_http.py --path DIR [--port N]; prints `LISTENING <port>`.
"""
import argparse
import os
import re
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb

# URL parameters that are protocol, not settings.
PROTOCOL_PARAMS = {
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "session_check", "user", "password", "quota_key", "compress", "decompress",
    "wait_end_of_query", "buffer_size", "enable_http_compression", "http_headers_progress_interval_ms",
    "send_progress_in_http_headers", "role",
}
INSERT_DATA = re.compile(r"^\s*(INSERT\s+INTO\s+.+?)\s+FORMAT\s+(\w+)\s*;?\s*$", re.S | re.I)
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Engine:
    """One chdb session; ClickHouse-in-process is used by one query at a time."""

    def __init__(self, path):
        self.path = path
        self.conn = chdb.connect(path)
        self.lock = threading.Lock()
        self.spool = tempfile.mkdtemp(prefix="chdb-http-")

    def run(self, sql, data, params):
        m = INSERT_DATA.match(sql)
        if m and data is not None:
            # Spooled before taking the lock, so the next insert's body is written while the
            # engine is busy with this one (chdb releases the GIL while it runs a query).
            spool = os.path.join(self.spool, "insert-{}.bin".format(threading.get_ident()))
            with open(spool, "wb") as f:
                f.write(data)
            try:
                sql = "{} FROM INFILE {} FORMAT {}".format(m.group(1), quote_literal(spool), m.group(2))
                return self.run_locked(sql, None, params)
            finally:
                os.unlink(spool)
        return self.run_locked(sql, data, params)

    def run_locked(self, sql, data, params):
        with self.lock:
            applied = []
            try:
                database = params.get("database")
                self.conn.query("USE {}".format(quote_ident(database or "default")), "TabSeparated")
                for name, value in params.items():
                    if name in PROTOCOL_PARAMS:
                        continue
                    if not SETTING_NAME.match(name):
                        raise BadRequest("Code: 115. DB::Exception: Unknown setting '{}'. (UNKNOWN_SETTING)".format(name))
                    self.conn.query("SET {} = {}".format(name, quote_literal(value)), "TabSeparated")
                    applied.append(name)
                fmt = params.get("default_format") or "TabSeparated"
                if data:
                    sql = sql + "\n" + data.decode("utf-8")
                return self.conn.query(sql, fmt).bytes()
            finally:
                # Settings are per request in ClickHouse; chdb's are per connection.
                for name in applied:
                    try:
                        self.conn.query("SET {} = DEFAULT".format(name), "TabSeparated")
                    except Exception:  # noqa: BLE001 - best effort, the next request sets its own
                        pass


class BadRequest(Exception):
    pass


def quote_ident(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def error_code(message):
    m = re.match(r"^Code: (\d+)\.", message)
    return m.group(1) if m else "1"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine = None

    def log_message(self, *args):  # quiet: tests read stdout for the port only
        pass

    def do_GET(self):
        self.handle_query(b"")

    def do_POST(self):
        self.handle_query(self.read_body())

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_query(self, body):
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path == "/ping" or ("query" not in params and not body):
            return self.reply(200, b"Ok.\n")
        for header, name in (("X-ClickHouse-Database", "database"), ("X-ClickHouse-Format", "default_format")):
            if self.headers.get(header) and name not in params:
                params[name] = self.headers[header]
        if params.get("compress") == "1" or params.get("decompress") == "1" or self.headers.get("Content-Encoding"):
            return self.reply(500, b"Code: 1. DB::Exception: the chdb test fixture does not speak ClickHouse "
                                   b"block compression; run the client without compression. (UNSUPPORTED_METHOD)\n", "1")
        if "query" in params:
            sql, data = params.pop("query"), body
        else:
            sql, data = body.decode("utf-8"), None
        try:
            out = self.engine.run(sql, data, params)
        except BadRequest as e:
            return self.reply(500, (str(e) + "\n").encode(), error_code(str(e)))
        except Exception as e:  # noqa: BLE001 - every engine error becomes ClickHouse's error reply
            msg = str(e).strip()
            return self.reply(500, (msg + "\n").encode(), error_code(msg))
        self.reply(200, out)

    def reply(self, status, body, code=None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-fixture")
        self.send_header("X-ClickHouse-Timezone", "UTC")
        if code is not None:
            self.send_header("X-ClickHouse-Exception-Code", code)
        self.end_headers()
        self.wfile.write(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", required=True, help="chdb data directory (persistent MergeTree storage)")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    Handler.engine = Engine(args.path)
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("LISTENING {}".format(server.server_address[1]), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
