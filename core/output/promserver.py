"""/metrics over HTTP (--prometheus-listen), from the standard library.

An HTTPServer in one daemon thread serves the printer's latest exposition: OpenMetrics when the scraper's Accept header asks for
application/openmetrics-text (as Prometheus does), else Prometheus text
0.0.4.  It reads a finished string under the printer's lock, never the
printer's tables, so tracing and serving never see each other half-done.
"""

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from ..errors import KerntraceError
from .prometheus import OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE


class _Handler(BaseHTTPRequestHandler):
    server_version = "kerntrace"

    def do_GET(self):  # noqa: N802 - the http.server hook's name
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, "text/html; charset=utf-8",
                       '<html><body><a href="/metrics">/metrics</a></body></html>\n')
            return
        if path != "/metrics":
            self._send(404, "text/plain; charset=utf-8", "not found\n")
            return
        openmetrics = "application/openmetrics-text" in (self.headers.get("Accept") or "")
        text = self.server.printer.latest(openmetrics)
        if text is None:
            # Nothing measured yet: an empty (valid) exposition.
            text = "# EOF\n" if openmetrics else ""
        self._send(200, OPENMETRICS_CONTENT_TYPE if openmetrics else PROMETHEUS_CONTENT_TYPE,
                   text)

    def _send(self, status, content_type, text):
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        # stdout and stderr belong to the tool: no access log.
        pass


class _Server(HTTPServer):
    def __init__(self, address, printer):
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.printer = printer
        HTTPServer.__init__(self, address, _Handler)


class MetricsServer(object):
    """Serves printer.latest() on `address` (host, port) until stop()."""

    def __init__(self, printer, address):
        printer.keep_both = True
        try:
            self.httpd = _Server(address, printer)
        except (OSError, socket.error) as e:
            raise KerntraceError("--prometheus-listen: cannot listen on %s:%d: %s"
                                 % (address[0] or "*", address[1], e.strerror or e))
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.2},
                                       name="kerntrace-metrics")
        self.thread.daemon = True

    @property
    def port(self):
        return self.httpd.server_address[1]

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
