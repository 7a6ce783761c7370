"""How a run's outcomes are named and counted for people: the order of the actions, each
object's label, and reasons grouped across records (the run's artifacts, its log lines and the
CLI's tables all use these)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from mappings.kinds import KINDS

ACTION_ORDER = ("created", "updated", "unchanged", "skipped", "conflict", "failed")
#: each kind's label ("organizations → companies"), in the order of writing, then what was
#: sent to Pipedrive ("companies → organizations")
OBJECT_LABELS: dict[str, str] = {
    **{k.pipedrive: k.label for k in KINDS},
    **{k.sent_type: k.sent_label for k in KINDS},
}

#: a record named by its id in a reason ("deal 12 is lost, not won"); grouping replaces the id
_RECORD_ID = re.compile(
    r"\b(deal|organization|person|note|company|end user|license|conversation) "
    r"(?:#)?(?:\d+|[0-9a-f]{24})\b"
)


def reason_group(reason: str) -> str:
    """A reason's group: its text with the record ids replaced by # ("deal # is lost, not
    won")."""
    return _RECORD_ID.sub(r"\1 #", reason)


def group_reasons(reasons: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Reasons (`object`, `action`, `reason`, `count`) with record ids replaced by # and the
    equal ones summed ("deal 12 is lost, not won" × 40 → one line of 40), most frequent first."""
    groups: dict[tuple[str, str, str], int] = {}
    originals: dict[tuple[str, str, str], set[str]] = {}
    for reason in reasons:
        original = str(reason.get("reason") or "(no reason given)")
        key = (str(reason["object"]), str(reason["action"]), reason_group(original))
        groups[key] = groups.get(key, 0) + int(reason.get("count") or 1)
        originals.setdefault(key, set()).add(original)
    ordered = sorted(groups.items(), key=lambda item: (-item[1], item[0]))
    return [
        {
            "object": o,
            "action": a,
            # one record (or one text): its own words, with its id
            "reason": next(iter(originals[(o, a, r)])) if len(originals[(o, a, r)]) == 1 else r,
            "count": n,
        }
        for (o, a, r), n in ordered
    ]
