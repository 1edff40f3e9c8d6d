"""`run --metrics HOST:PORT`: the guard's metrics served at /metrics by prometheus_client.

The server runs in prometheus_client's own thread, so a scrape never runs on mitmproxy's event
loop; it asks the loop for the text `Metrics.render` gives (the same series the textfile has)
and hands it on, parsed into metric families, exactly as rendered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from concurrent.futures import Future
from wsgiref.simple_server import WSGIServer

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader
from mitmproxy.exceptions import OptionsError
from prometheus_client import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from guard.proxy.reload import Runtime

logger = logging.getLogger(__name__)

SCRAPE_WAIT_SECONDS = 5.0  # how long a scrape waits for the event loop before it fails


class _GuardSeries(Collector):
    """The guard's series, rendered on mitmproxy's event loop (where they are counted)."""

    def __init__(self, runtime: Runtime, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime, self.loop = runtime, loop

    def collect(self) -> Iterator[Metric]:
        text: Future[str] = Future()

        def render() -> None:
            try:
                text.set_result(self.runtime.metrics.render())
            except Exception as exc:  # reaches the scraper as an HTTP 500, not the loop
                text.set_exception(exc)

        self.loop.call_soon_threadsafe(render)
        yield from text_string_to_metric_families(text.result(timeout=SCRAPE_WAIT_SECONDS))


class MetricsEndpoint:
    """Serves /metrics while the proxy runs, when `guard_metrics_listen` is set."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.server: WSGIServer | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option("guard_metrics_listen", str, "",
                          "HOST:PORT to serve Prometheus metrics at /metrics ('' = off).")

    def configure(self, updated: set[str]) -> None:
        if "guard_metrics_listen" in updated and ctx.options.guard_metrics_listen:
            address(ctx.options.guard_metrics_listen)  # fail at start-up, not at the first scrape

    def running(self) -> None:
        if not ctx.options.guard_metrics_listen:
            return
        host, port = address(ctx.options.guard_metrics_listen)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_GuardSeries(self.runtime, asyncio.get_running_loop()))
        self.server, _ = start_http_server(port, host, registry=registry)
        logger.info("autodiscover-guard: metrics at http://%s/metrics", ctx.options.guard_metrics_listen)

    def done(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) as (host, port).

    Raises:
        OptionsError: not HOST:PORT.
    """
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionsError(f"guard_metrics_listen: expected HOST:PORT such as 127.0.0.1:9464, got {text!r}")  # type: ignore[no-untyped-call]
    return host.strip("[]"), int(port)
