"""``registry-runtime serve`` and ``agent``: the runtime service and a hive's heartbeat sender."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the serve and agent commands."""
    p = subparsers.add_parser("serve", help="run the hive/worker and service registry server")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_port, default=8081, help="port to listen on")
    p.add_argument("--state", help="where hives, workers and services live: memory (this "
                   "process) or redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS), shared "
                   "by replicas (default: $BUNDLE_REGISTRY_STATE, else memory)")  # fmt: skip
    p.add_argument("--db", type=Path, help="with --state memory: the SQLite file for services "
                   "and the hive catalog (default: registry-runtime.db)")  # fmt: skip
    p.add_argument("--token-file", type=Path, help="bearer tokens, 'TOKEN [HIVE_ID]' per line "
                   "(default: one token for this run, printed at start)")  # fmt: skip
    p.add_argument("--ttl", type=_positive, default=30.0, help="hive liveness TTL in seconds")
    p.add_argument("--registry", help="the registry whose models /v1/models lists and whose "
                   "default model /v1/schedule takes without ?model; also serve /v1/promote, "
                   "resolve, aliases, history, verify over it (a directory, s3:// or, read-only, "
                   "http(s)://) (default: $BUNDLE_REGISTRY)")  # fmt: skip
    # fmt: off
    p.add_argument("--health-interval", type=_positive, default=30.0,
                   help="seconds between health checks of the services")
    p.add_argument("--health-timeout", type=_positive, default=5.0,
                   help="seconds a service's health check may take")
    p.add_argument("--cleanup-interval", type=_positive, default=60.0,
                   help="seconds between removals of services silent for 300 s")
    p.add_argument("--allow-anonymous-services", action="store_true",
                   help="accept service writes (/services) without a token, as infini-registry "
                   "clients send them; a service registered with a token stays its owner's")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    # fmt: on
    p.set_defaults(handler=_serve)

    p = subparsers.add_parser("agent", help="send this hive's heartbeats to a server")
    p.add_argument("--server", required=True, help="the server's URL, http://HOST:PORT")
    p.add_argument("--hive-id", required=True, help="this hive's id")
    p.add_argument("--token-file", type=Path, help="file whose first token is sent "
                   "(default: none is sent)")  # fmt: skip
    p.add_argument("--interval", type=_positive, default=15.0, help="seconds between heartbeats")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--workers-file", type=Path, help="JSON list of this hive's workers")
    source.add_argument("--workers-cmd", help="command printing the JSON list of workers")
    p.set_defaults(handler=_agent)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _serve(args: argparse.Namespace) -> int:
    from runtime.cli import REGISTRY_ENV
    from runtime.service.state import STATE_ENV

    registry = args.registry or os.environ.get(REGISTRY_ENV)
    state = args.state or os.environ.get(STATE_ENV) or "memory"
    _require_extras(registry, state)
    from runtime.service.server import ServeOptions, serve

    options = ServeOptions(
        host=args.host, port=args.port, db=args.db, token_file=args.token_file, ttl=args.ttl,
        registry=registry, state=state,
        health_interval=args.health_interval, health_timeout=args.health_timeout,
        cleanup_interval=args.cleanup_interval,
        allow_anonymous_services=args.allow_anonymous_services, access_log=args.access_log,
    )  # fmt: skip
    serve(options)
    return 0


def _require_extras(registry: str | None, state: str) -> None:
    """Check the extras ``serve`` needs before it starts: the server's, the registry location's,
    and redis-py for ``--state redis://``."""
    from runtime.extras import require, require_for
    from runtime.service.state import parse_state
    from runtime.storage.location import parse_location

    require("server", "serve")
    if registry:
        require_for(parse_location(registry))
    if parse_state(state).kind == "redis":
        require("redis", "--state redis://")


def _agent(args: argparse.Namespace) -> int:
    from runtime.service import agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    provider: agent.Provider = agent.no_workers
    if args.workers_file is not None:
        provider = agent.file_provider(args.workers_file)
    elif args.workers_cmd is not None:
        provider = agent.command_provider(args.workers_cmd)
    token = agent.read_token(args.token_file) if args.token_file else None
    config = agent.AgentConfig(
        server=args.server, hive_id=args.hive_id, token=token, interval=args.interval
    )
    agent.Agent(config, provider).run()
    return 0
