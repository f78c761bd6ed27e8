"""The ``xaccel`` command: ``demo``, ``check`` and ``config``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import ConfigError
from .settings import Settings


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xaccel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="serve an example app with sample media on 127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="port of the app (0: any free port)")
    demo.add_argument("--proxy", choices=["nginx", "caddy"], help="put this proxy in front of the app")
    demo.add_argument("--proxy-port", type=int, default=8080, help="port of the proxy (0: any free port)")
    demo.add_argument("--media", help="folder for the sample media (default: a temporary one)")

    commands.add_parser("check", help="validate the XACCEL_* variables and print the effective settings")

    config = commands.add_parser("config", help="print the nginx or Caddy configuration for these settings")
    config.add_argument("proxy", choices=["nginx", "caddy"])
    config.add_argument("--upstream", type=_address, required=True, help="HOST:PORT of the app server")
    config.add_argument("--listen", type=_address, required=True, help="HOST:PORT the proxy listens on")
    return parser


def check(settings: Settings) -> int:
    width = max(len(var) for var, _ in settings.describe())
    for var, text in settings.describe():
        print(f"{var:<{width}}  {text}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "check":
            return check(settings)
        if args.command == "config":
            from .proxyconf import render

            print(render(args.proxy, settings, upstream=args.upstream, listen=args.listen), end="")
            return 0
        from .demo import run

        return run(settings, port=args.port, proxy=args.proxy, proxy_port=args.proxy_port, media=args.media)
    except ConfigError as exc:
        print(f"xaccel: {exc}", file=sys.stderr)
        return 2
