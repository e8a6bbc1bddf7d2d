"""`pressroom metrics --port N`: Prometheus metrics on their own port, for a deployment without the dashboard
(the dashboard serves the same at /metrics). One process exports for every worker: the counters are in
Redis, and the gauges come from one background gatherer (workers/dashboard/queues.py)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from workers.errors import ConfigError


def _serve(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from workers.app import app_from_env
    from workers.dashboard.queues import QueueMonitor
    from workers.metrics.collector import registry

    app, rt = app_from_env()
    if rt.settings.embedded:
        raise ConfigError("metrics are read from Redis: set PRESSROOM_BROKER_URL=redis://…")
    monitor = QueueMonitor(app, rt, interval=args.interval)
    monitor.start()
    server, thread = start_http_server(args.port, addr=args.host, registry=registry(rt.metrics, monitor.snapshot))
    print(f"pressroom: metrics on http://{args.host}:{server.server_port}/metrics", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    monitor.stop()
    thread.join(2)
    return 0


def add_metrics_command(sub: Any) -> None:
    p = sub.add_parser("metrics", help="serve Prometheus metrics (queues, workers, runs, tasks, providers)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9808, help="0: any free port (printed)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between reads of the broker")
    p.set_defaults(func=_serve)
