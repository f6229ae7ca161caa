"""`carbonfast serve`: exports this host's energy to Prometheus."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from carbonfast.cli.messages import say
from carbonfast.cli.options import meter_args


def add_parser(sub: Any, common: argparse.ArgumentParser, summary: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        parents=[common],
        usage="carbonfast serve [--address ADDRESS] [--port PORT]",
        help=summary,
        description="Serve this host's energy, power and emissions at http://ADDRESS:PORT/metrics "
        "for Prometheus to scrape; the counters are read at each scrape. Estimates follow the "
        "whole machine's CPU time unless --scope says otherwise.",
    )
    p.add_argument(
        "--address",
        default=None,
        help="address to listen on (default 127.0.0.1: this host only; 0.0.0.0 or :: for every "
        "interface)",
    )
    p.add_argument(
        "--port", type=int, default=None, help="port to listen on (default 9464; 0: any free port)"
    )
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace) -> int:
    try:
        from carbonfast import serve
    except ImportError as e:
        raise ValueError(str(e)) from None
    address = serve.DEFAULT_ADDRESS if args.address is None else args.address
    port = serve.DEFAULT_PORT if args.port is None else args.port
    meter = serve.host_meter(**meter_args(args))
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        exporter = serve.start(meter, address, port)
        try:
            g_per_kwh, source, pue = exporter.collector.intensity
            names = ", ".join(meter.domain_names) or "none"
            say(f"carbonfast: serving {len(meter.domains)} domains ({names}) at {exporter.url}")
            labels = " ".join(f"{k}={v}" for k, v in exporter.collector.constant_labels.items())
            say(f"  labels {labels}; emissions at {g_per_kwh:g} g/kWh x PUE {pue:g} ({source})")
            if not serve.is_loopback(address):
                say(
                    f"  listening beyond this host: whoever reaches port {exporter.port} reads "
                    "its power; limit that with a firewall"
                )
            stop.wait()
        finally:
            exporter.close()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    say("carbonfast: stopped serving")
    return 0
