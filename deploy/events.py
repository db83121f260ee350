"""`ctta events tail` and `ctta events replay`: the SDK from a shell.

Both verify every event against the federation registry. `tail` shows an unverified
event as `NO (reason)` so an operator sees tampering; `replay` writes only verified
events, since the archive is meant to be trusted later.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from ctta.protocol.records import RecordContent
from ctta.protocol.sdk import IntegratorEvent, Start, Subscription, load_registry

COLUMNS = ("time", "centre", "kind", "id", "version", "action", "verified", "title")


def start_of(args: argparse.Namespace) -> Start:
    if args.since is None:
        return args.start
    if args.since.tzinfo is None:
        raise SystemExit("--since needs a timezone, e.g. 2025-01-31T08:00+08:00")
    return args.since


async def open_subscription(args: argparse.Namespace) -> Subscription:
    return await Subscription.open(
        args.nats_url,
        await load_registry(args.registry),
        durable=args.durable,
        kinds=args.kind,
        centres=args.centre,
        start=start_of(args),
        credentials_file=args.credentials,
        nkey_seed=args.nkey_seed_file.read_text().strip() if args.nkey_seed_file else None,
    )


def table_row(event: IntegratorEvent) -> str:
    """One readable line; `-` where an event that is not a CloudEvent has no value."""
    envelope, record = event.envelope, event.record
    title = ""
    if isinstance(record, RecordContent):
        title = " / ".join(text for text in (record.title.zh, record.title.en) if text)
    kind, _, record_id = (envelope.subject if envelope else "-/-").partition("/")
    cells = (
        envelope.time.isoformat(timespec="seconds") if envelope else "-",
        envelope.centre if envelope else "-",
        kind,
        record_id,
        str(envelope.version) if envelope else "-",
        envelope.action if envelope else "-",
        "yes" if event.verified else f"NO ({event.problem})",
        title,
    )
    return "  ".join(cells)


def json_line(event: IntegratorEvent) -> str:
    """The structured CloudEvent plus what the SDK found, for piping into jq."""
    document = event.to_structured() if event.envelope else {"subject": event.subject}
    document["verified"] = event.verified
    if event.problem:
        document["problem"] = event.problem
    return json.dumps(document, ensure_ascii=False, default=str)


async def tail(args: argparse.Namespace, out: TextIO = sys.stdout) -> None:
    """Print events as they arrive until interrupted (or `--count` events)."""
    async with await open_subscription(args) as subscription:
        if not args.json:
            out.write("  ".join(COLUMNS) + "\n")
        seen = 0
        async for event in subscription:
            out.write((json_line(event) if args.json else table_row(event)) + "\n")
            out.flush()
            await event.ack()
            seen += 1
            if args.count is not None and seen >= args.count:
                return


async def replay(args: argparse.Namespace) -> tuple[int, int]:
    """Write verified events as JSON lines until caught up; returns (written, skipped)."""
    written = skipped = 0
    async with await open_subscription(args) as subscription:
        with Path(args.output).open("w", encoding="utf-8") as out:
            pending = await subscription.pending()
            while pending:
                event = await subscription.next(timeout=10)
                if event is None:
                    raise SystemExit(f"no event within 10 s with {pending} still pending")
                if event.verified:
                    out.write(json.dumps(event.to_structured(), ensure_ascii=False) + "\n")
                    written += 1
                else:
                    sys.stderr.write(f"skipped unverified {event.subject}: {event.problem}\n")
                    skipped += 1
                await event.ack()
                pending = event.pending
    return written, skipped
