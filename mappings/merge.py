"""Echo suppression and the three-way merge (design §2.8-2.9): a link's per-field state, both
sides' canonical values, and what to write where.

A link keeps the Planhat body last synced (`store.records.Link.values`): per field, the value
both sides held after the last sync. `flatten` makes it `{key: value}` keyed like the rules
(`name`, `custom.Contract tier`); `changed_fields` is what a receive push sends of a linked
record (only what changed since). Where a section sends, `tasks.twoway.merge_pair` calls

    result = three_way_merge(
        field_hashes(planhat_values("company", link_body, mappings)),   # the last synced
        pipedrive_values("company", organization, mappings),           # both sides, now
        planhat_values("company", company, mappings),
        mappings.conflict_policy,
        rules=mappings.rules["company"],
        pipedrive_updated=organization["update_time"], planhat_updated=company["updatedAt"],
    )
    planhat_patch("company", result.to_planhat, source_id=organization["id"])   # Planhat item
    pipedrive_patch("company", result.to_pipedrive, mappings, current=organization)  # PATCH body

and, once both writes succeeded, stores `result.synced` (the values both sides now hold) in the
link. A value unchanged since the last sync is never written again (no echo); a field changed
on one side only goes to the other; changed on both → `policy`, reported in `result.conflicts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mappings.resolve import Mappings, Rule
from mappings.rows import Record, planhat_body, put_pipedrive, read_pipedrive, read_planhat
from mappings.values import (
    ABSENT,
    Unconvertible,
    canonical_value,
    field_hash,
    field_id,
    parse_time,
    receive_value,
    send_value,
)
from store.records import canonical_json

__all__ = [
    "Conflict",
    "ConflictPolicy",
    "MergeResult",
    "changed_fields",
    "field_hashes",
    "flatten",
    "pipedrive_patch",
    "pipedrive_values",
    "planhat_patch",
    "planhat_values",
    "three_way_merge",
    "unflatten",
]


# --------------------------------------------------------------------------------------------
# A Planhat body as flat fields: the per-field state a link keeps
# --------------------------------------------------------------------------------------------


def flatten(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Planhat body as `{key: value}` keyed like the rules (`name`, `custom.<name>`): the
    form in which the last synced values are compared field by field."""
    flat: dict[str, Any] = {}
    for key, value in body.items():
        if key == "custom" and isinstance(value, Mapping):
            for name, inner in value.items():
                flat[f"custom.{name}"] = inner
        else:
            flat[key] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> Record:
    """`flatten` undone: the Planhat body (custom fields under `custom`)."""
    return planhat_body(flat, {})


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (`True` is not `1`; key order does not matter)."""
    if type(a) is type(b) and not isinstance(a, dict | list):
        return bool(a == b)
    if type(a) is not type(b):
        return False
    return canonical_json({"v": a}) == canonical_json({"v": b})


def changed_fields(synced: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `now` (flat) whose value differs from the last synced one (`synced`, flat;
    a field never synced counts as changed). A field missing from `now` is not a change: an
    absent or empty value never overwrites (design §2.4)."""
    return {
        key: value
        for key, value in now.items()
        if key not in synced or not _same(synced[key], value)
    }


def field_hashes(values: Mapping[str, Any]) -> dict[str, str]:
    """`{key: field_hash(value)}`: what the state store keeps as the last synced values."""
    return {key: field_hash(value) for key, value in values.items() if value is not ABSENT}


def pipedrive_values(obj: str, record: Mapping[str, Any], mappings: Mappings) -> dict[str, Any]:
    """The canonical value of every mapped field of a Pipedrive record (whatever its
    direction), keyed like the Planhat side. Absent, empty and unconvertible fields are left out."""
    out: dict[str, Any] = {}
    for rule in mappings.rules[obj]:
        try:
            value = receive_value(read_pipedrive(record, rule), rule.converter)
        except Unconvertible:
            continue
        if value is not ABSENT:
            out[rule.key] = value
    return out


def planhat_values(obj: str, record: Mapping[str, Any], mappings: Mappings) -> dict[str, Any]:
    """The canonical value of every mapped field of a Planhat record (whatever its direction).
    Absent, empty and unconvertible fields are left out."""
    out: dict[str, Any] = {}
    for rule in mappings.rules[obj]:
        try:
            value = canonical_value(read_planhat(record, rule), rule.converter)
        except Unconvertible:
            continue
        if value is not ABSENT:
            out[rule.key] = value
    return out


def planhat_patch(obj: str, values: Mapping[str, Any], *, source_id: Any) -> Record:
    """A Planhat upsert item that writes `values` (canonical, keyed `name` / `custom.<name>`)
    to the record whose `sourceId` is `source_id`."""
    head: Record = {"sourceId": str(source_id)}
    if obj in ("license", "note"):
        head["externalId"] = str(source_id)
    return planhat_body(values, head)


def pipedrive_patch(
    obj: str,
    values: Mapping[str, Any],
    mappings: Mappings,
    *,
    current: Mapping[str, Any] | None = None,
) -> Record:
    """A Pipedrive body (v2; notes v1) that writes `values` (canonical, keyed like the Planhat
    side) through the send rules; with `current`, the record's `id` and its present values (to
    keep a monetary field's currency and a person's other emails). Unconvertible values are
    left out (`mappings.send` reports them as issues)."""
    body: Record = {}
    if current is not None and current.get("id") is not None:
        body["id"] = field_id(current.get("id"))
    for rule in mappings.rules[obj]:
        if not rule.send or rule.key not in values:
            continue
        present = read_pipedrive(current, rule) if current is not None else ABSENT
        try:
            raw = send_value(values[rule.key], rule.converter, present)
        except Unconvertible:
            continue
        if raw is ABSENT:
            continue
        put_pipedrive(body, rule, raw)
    return body


ConflictPolicy = Literal["pipedrive_wins", "planhat_wins", "newest_wins"]


@dataclass(frozen=True)
class Conflict:
    """A field changed on both sides since the last sync, to different values."""

    key: str
    pipedrive_value: Any
    planhat_value: Any
    winner: Literal["pipedrive", "planhat"]
    policy: str


@dataclass
class MergeResult:
    """What to write where, and the new last-synced hashes to store once both writes succeed."""

    to_planhat: dict[str, Any] = field(default_factory=dict)
    to_pipedrive: dict[str, Any] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    base: dict[str, str] = field(default_factory=dict)
    #: the value both sides hold once the writes succeed, per key whose value is known (keys
    #: left as they were are not in it)
    synced: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:  # values_for_planhat, values_for_pipedrive, conflicts
        return iter((self.to_planhat, self.to_pipedrive, self.conflicts))


def _newer(a: Any, b: Any) -> bool | None:
    """Whether time `a` is later than `b` (None when either is unknown or they are equal)."""
    try:
        ta, tb = parse_time(a), parse_time(b)
    except (Unconvertible, TypeError):
        return None
    return None if ta == tb else ta > tb


def three_way_merge(
    base: Mapping[str, str],
    pipedrive_side: Mapping[str, Any],
    planhat_side: Mapping[str, Any],
    policy: str,
    *,
    rules: Iterable[Rule] | None = None,
    pipedrive_updated: Any = None,
    planhat_updated: Any = None,
) -> MergeResult:
    """Field-level three-way merge against the last synced hashes (design §2.9).

    Per field key: a side whose value's hash differs from `base` has changed (a side without the
    field has not). Equal values on both sides → nothing to write. Changed on one side only →
    that side wins, if the field's direction allows writing the other way. Changed on both, to
    different values → `policy`: `pipedrive_wins`, `planhat_wins`, or `newest_wins` (by the
    records' update times; Pipedrive when unknown or equal), and a `Conflict` is reported.
    A field never synced (no base) with different values on both sides is such a conflict.
    `rules` gives each field's directions (default: every key both ways)."""
    if policy not in ("pipedrive_wins", "planhat_wins", "newest_wins"):
        raise ValueError(f"unknown conflict policy {policy!r}")
    ways: dict[str, tuple[bool, bool]]
    if rules is None:
        keys = dict.fromkeys([*pipedrive_side, *planhat_side, *base])
        ways = {k: (True, True) for k in keys}
    else:
        ways = {r.key: (r.receive, r.send) for r in rules}
    result = MergeResult()
    for key, (can_receive, can_send) in ways.items():
        pd_value = pipedrive_side.get(key, ABSENT)
        ph_value = planhat_side.get(key, ABSENT)
        before = base.get(key)
        pd_hash = field_hash(pd_value) if pd_value is not ABSENT else None
        ph_hash = field_hash(ph_value) if ph_value is not ABSENT else None
        if pd_hash is not None and pd_hash == ph_hash:
            result.base[key] = pd_hash
            result.synced[key] = pd_value
            continue
        pd_changed = pd_hash is not None and pd_hash != before
        ph_changed = ph_hash is not None and ph_hash != before
        winner: Literal["pipedrive", "planhat"] | None = None
        if pd_changed and ph_changed and can_receive and can_send:
            if policy == "pipedrive_wins":
                winner = "pipedrive"
            elif policy == "planhat_wins":
                winner = "planhat"
            else:
                winner = "planhat" if _newer(planhat_updated, pipedrive_updated) else "pipedrive"
            result.conflicts.append(Conflict(key, pd_value, ph_value, winner, policy))
        elif pd_changed and can_receive:
            winner = "pipedrive"
        elif ph_changed and can_send:
            winner = "planhat"
        if winner == "pipedrive":
            result.to_planhat[key] = pd_value
            assert pd_hash is not None  # a side wins only with a changed, present value
            result.base[key] = pd_hash
            result.synced[key] = pd_value
        elif winner == "planhat":
            result.to_pipedrive[key] = ph_value
            assert ph_hash is not None
            result.base[key] = ph_hash
            result.synced[key] = ph_value
        elif before is not None:
            result.base[key] = before
    return result
