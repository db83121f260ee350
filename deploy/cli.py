"""The `ctta` command: one entry point, a subcommand per job, `--help` on each."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ctta.deploy import operations
from ctta.server.logs import configure as configure_logging

if TYPE_CHECKING:
    pass


def _node(args: argparse.Namespace) -> None:
    import uvicorn

    from ctta.node.app import create_app
    from ctta.node.settings import NodeSettings

    settings = NodeSettings(centre=args.centre) if args.centre else NodeSettings()  # type: ignore[call-arg]
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)


def _node_token_issue(args: argparse.Namespace) -> None:
    from ctta.node.app import MIGRATIONS
    from ctta.node.settings import NodeSettings
    from ctta.node.tokens.service import issue_token
    from ctta.server.auth import Role
    from ctta.server.db import create_db_engine, migrate, session_scope

    settings = NodeSettings(centre=args.centre) if args.centre else NodeSettings()  # type: ignore[call-arg]
    engine = create_db_engine(settings.database_url)
    try:
        migrate(engine, MIGRATIONS)
        with session_scope(engine, write=True) as session:
            row, token = issue_token(session, Role(args.role), args.label)
            token_id = row.id
    finally:
        engine.dispose()
    print(f"# {args.role} token {token_id} ({args.label}); shown once, stored only as a hash")
    print(token)


def _hub(args: argparse.Namespace) -> None:
    import uvicorn

    from ctta.hub.app import create_app
    from ctta.hub.settings import HubSettings

    uvicorn.run(create_app(HubSettings()), host=args.host, port=args.port, log_config=None)


def _hub_rebuild(_: argparse.Namespace) -> None:
    from ctta.hub.app import MIGRATIONS
    from ctta.hub.index.ingest import rebuild
    from ctta.hub.settings import HubSettings
    from ctta.protocol import backbone
    from ctta.protocol.registry import FederationRegistry
    from ctta.server.db import create_db_engine, migrate

    settings = HubSettings()

    async def run() -> int:
        engine = create_db_engine(settings.database_url)
        migrate(engine, MIGRATIONS)
        nc = await backbone.connect(settings.nats_url, "hub-rebuild")
        try:
            return await rebuild(
                engine, FederationRegistry.load(settings.registry_file), nc.jetstream()
            )
        finally:
            await nc.close()

    print(f"rebuilt the hub index from {backbone.EVENTS_STREAM}: {asyncio.run(run())} records")


def _schemas_export(args: argparse.Namespace) -> None:
    from ctta.protocol.schemas import export

    for path in export(args.directory):
        print(path)


def _schemas_asyncapi(args: argparse.Namespace) -> None:
    from ctta.protocol.asyncapi import render

    if args.output is None:
        sys.stdout.write(render())
    else:
        args.output.write_text(render(), encoding="utf-8")
        print(args.output)


def _events_tail(args: argparse.Namespace) -> None:
    from ctta.deploy.events import tail

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(args))


def _events_replay(args: argparse.Namespace) -> None:
    from ctta.deploy.events import replay

    written, skipped = asyncio.run(replay(args))
    print(f"{args.output}: {written} events written, {skipped} unverified skipped", file=sys.stderr)


def _event_options(parser: argparse.ArgumentParser, default_start: str) -> None:
    """What `events tail` and `events replay` share: filters, start, backbone and registry."""
    parser.add_argument("--kind", action="append", default=[], help="only this kind (repeatable)")
    parser.add_argument(
        "--centre", action="append", default=[], help="only this centre (repeatable)"
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--since", type=datetime.fromisoformat, help="start at this ISO time (with a timezone)"
    )
    start.add_argument(
        "--from-beginning",
        dest="start",
        action="store_const",
        const="beginning",
        default=default_start,
        help=f"start with the oldest stored event (default: from {default_start})",
    )
    parser.add_argument(
        "--nats-url", default=os.environ.get("CTTA_NATS_URL", "nats://127.0.0.1:4222")
    )
    parser.add_argument(
        "--registry",
        default=os.environ.get("CTTA_REGISTRY_FILE", "deploy/federation.json"),
        help="federation registry file or http(s) URL (default: CTTA_REGISTRY_FILE)",
    )
    parser.add_argument("--durable", help="consumer name, to resume where the last run stopped")
    parser.add_argument("--credentials", help="NATS .creds file issued to this integrator")
    parser.add_argument(
        "--nkey-seed-file",
        type=Path,
        help="NKey seed issued to this integrator by `ctta keys init --integrator NAME` "
        "(then use --durable int-NAME, its pre-created consumer)",
    )


def _demo(args: argparse.Namespace) -> None:
    from ctta.deploy.demo import DemoOptions, run_demo

    options = DemoOptions(
        data_dir=args.data_dir,
        token=args.token,
        host=args.host,
        hub_port=args.hub_port,
        nats_port=args.nats_port,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(options))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctta",
        description="CTTA backbone: centre nodes, NATS backbone and federation hub. "
        "Settings come from CTTA_* environment variables (see README).",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="json: one object per line, for log collectors (default: CTTA_LOG_FORMAT or text)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the whole federation locally with sample data")
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path("ctta-demo"),
        help="where state lives (default: ./ctta-demo)",
    )
    demo.add_argument("--token", help="make every node accept this staff token (for scripts)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument(
        "--hub-port", type=int, default=8700, help="hub port; nodes take the next eleven"
    )
    demo.add_argument(
        "--nats-port", type=int, default=4333, help="port of the demo's own nats-server"
    )
    demo.set_defaults(handler=_demo)

    node = commands.add_parser("node", help="run one centre's node (CTTA_* settings)")
    node.add_argument("--centre", help="centre id (or CTTA_CENTRE)")
    node.add_argument("--host", default="127.0.0.1")
    node.add_argument("--port", type=int, default=8701)
    node.set_defaults(handler=_node)
    node_commands = node.add_subparsers(dest="node_command", metavar="SUBCOMMAND")
    token = node_commands.add_parser(
        "token",
        help="issue a bearer token for this node (CTTA_* settings name its database)",
        description="Prints the token once; the node stores only its SHA-256. Revoke it "
        "with DELETE /api/v1/admin/tokens/{id}.",
    )
    token.add_argument("--role", choices=["reader", "staff", "admin"], required=True)
    token.add_argument("--label", required=True, help="who or what it is for")
    token.set_defaults(handler=_node_token_issue)

    hub = commands.add_parser("hub", help="run the federation hub, or manage its index")
    hub.add_argument("--host", default="127.0.0.1")
    hub.add_argument("--port", type=int, default=8700)
    hub.set_defaults(handler=_hub)
    hub_commands = hub.add_subparsers(dest="hub_command", metavar="SUBCOMMAND")
    rebuild = hub_commands.add_parser(
        "rebuild", help="empty the index and replay CTTA_EVENTS into it"
    )
    rebuild.set_defaults(handler=_hub_rebuild)

    backbone = commands.add_parser("backbone", help="provision the NATS backbone")
    backbone_commands = backbone.add_subparsers(
        dest="backbone_command", required=True, metavar="SUBCOMMAND"
    )
    init = backbone_commands.add_parser(
        "init",
        help="create streams and consumers (idempotent)",
        description="single: one server (demo, tests, small deployments). leaf: connect to "
        "the hub cluster and provision its replicated streams, then every centre's leaf "
        "streams through the leaf links. centre: one centre's leaf, directly.",
    )
    init.add_argument(
        "--nats-url",
        default=os.environ.get("CTTA_NATS_URL", "nats://127.0.0.1:4222"),
        help="server URL(s), comma-separated for a cluster (default: CTTA_NATS_URL)",
    )
    init.add_argument(
        "--topology",
        choices=["single", "leaf", "centre"],
        default="single",
        help="(default: single)",
    )
    init.add_argument(
        "--nkey-seed-file",
        type=Path,
        help="NKey seed to log in with (default: CTTA_NATS_NKEY_SEED; the hub user's for leaf)",
    )
    init.add_argument(
        "--centre", action="append", default=[], help="centre to provision (repeatable)"
    )
    init.add_argument(
        "--registry",
        type=Path,
        default=Path(os.environ.get("CTTA_REGISTRY_FILE", "deploy/federation.json")),
        help="federation registry: its centres are provisioned when no --centre is given",
    )
    init.add_argument(
        "--integrator",
        action="append",
        default=[],
        help="pre-create this integrator's consumer (leaf topology; repeatable)",
    )
    init.set_defaults(handler=operations.backbone_init)

    keys = commands.add_parser("keys", help="event-signing keys and NATS credentials")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    generate = keys_commands.add_parser(
        "generate", help="new signing key for a centre; prints CTTA_* settings"
    )
    generate.add_argument("--centre", required=True)
    generate.add_argument(
        "--registry", type=Path, help="also add the public key to this federation file"
    )
    generate.set_defaults(handler=operations.keys_generate)
    keys_init = keys_commands.add_parser(
        "init",
        help="all keys of a federation and the nats-server configs that use them",
        description="Creates (once; reruns keep existing keys) the event-signing keys of "
        "every centre and the NKey users of the backbone (hub, system, a leaf per centre, "
        "one per integrator), adds the public signing keys to DIR/federation.json, and "
        "writes DIR/nats/*.conf and an env file per service under DIR/env/. Keep DIR secret.",
    )
    keys_init.add_argument("--dir", type=Path, required=True, help="where keys and configs go")
    keys_init.add_argument("--centre", action="append", default=[], help="only these centres")
    keys_init.add_argument(
        "--integrator", action="append", default=[], help="an integrator's credential"
    )
    keys_init.add_argument(
        "--layout",
        choices=["containers", "loopback"],
        default="containers",
        help="containers: service names and standard ports (compose, Kubernetes); "
        "loopback: everything on 127.0.0.1 with free ports, to try on one machine",
    )
    keys_init.set_defaults(handler=operations.keys_init)

    deploy = commands.add_parser("deploy", help="deployment manifests")
    deploy_commands = deploy.add_subparsers(
        dest="deploy_command", required=True, metavar="SUBCOMMAND"
    )
    render = deploy_commands.add_parser(
        "render",
        help="write the nats-server configs, docker compose file and Kubernetes manifests",
        description="Secrets stay out: configs refer to $CTTA_* variables that come from "
        "the env files of `ctta keys init`.",
    )
    render.add_argument("--output", type=Path, default=Path("deploy"), help="(default: deploy)")
    render.add_argument("--centre", action="append", default=[], help="only these centres")
    render.set_defaults(handler=operations.deploy_render)

    schemas = commands.add_parser("schemas", help="JSON Schemas of the event payloads")
    schemas_commands = schemas.add_subparsers(
        dest="schemas_command", required=True, metavar="SUBCOMMAND"
    )
    export = schemas_commands.add_parser("export", help="write one JSON Schema file per payload")
    export.add_argument("directory", type=Path)
    export.set_defaults(handler=_schemas_export)
    asyncapi = schemas_commands.add_parser(
        "asyncapi", help="write the AsyncAPI 3.0 document of the backbone (JSON)"
    )
    asyncapi.add_argument("--output", type=Path, help="file to write (default: stdout)")
    asyncapi.set_defaults(handler=_schemas_asyncapi)

    events = commands.add_parser("events", help="follow backbone events as an integrator")
    events_commands = events.add_subparsers(
        dest="events_command", required=True, metavar="SUBCOMMAND"
    )
    tail = events_commands.add_parser("tail", help="print verified events as they arrive")
    _event_options(tail, "now")
    tail.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    tail.add_argument("--count", type=int, help="stop after this many events")
    tail.set_defaults(handler=_events_tail)
    replay = events_commands.add_parser(
        "replay", help="write verified events as CloudEvents JSON lines, then exit"
    )
    _event_options(replay, "beginning")
    replay.add_argument("--output", type=Path, required=True, help="JSON-lines file to write")
    replay.set_defaults(handler=_events_replay)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    args.handler(args)
