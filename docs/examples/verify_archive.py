"""Check a `ctta events replay` archive offline: every line must still verify.

Run: python docs/examples/verify_archive.py events.jsonl federation.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ctta.protocol.envelope import EnvelopeError, check_provenance, from_structured
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.subjects import RESPONSE_KIND, record_subject, response_subject
from ctta.protocol.taxonomy import RecordKind


def verify_archive(archive: Path, registry: FederationRegistry) -> tuple[int, list[str]]:
    """(events that verify, problems of those that do not)."""
    good, problems = 0, []
    for number, line in enumerate(archive.read_text(encoding="utf-8").splitlines(), 1):
        document = json.loads(line)
        kind, _, record_id = document["subject"].partition("/")
        subject = (
            response_subject(document["centre"], record_id)
            if kind == RESPONSE_KIND
            else record_subject(document["centre"], RecordKind(kind), record_id)
        )
        try:
            check_provenance(from_structured(subject, document), registry)
        except EnvelopeError as exc:
            problems.append(f"line {number}: {exc}")
        else:
            good += 1
    return good, problems


if __name__ == "__main__":
    verified, failures = verify_archive(
        Path(sys.argv[1]), FederationRegistry.load(Path(sys.argv[2]))
    )
    sys.stdout.write(f"{verified} events verify\n" + "".join(f"{p}\n" for p in failures))
    sys.exit(1 if failures else 0)
