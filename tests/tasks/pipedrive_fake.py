"""An in-memory Pipedrive at the client seam: the reads by id and the writes the send direction
makes of `PipedriveClient`, served by the sandbox Pipedrive's model (its PATCH semantics, its
validation, records in the API's v2 shape) without HTTP. Counts its calls per method; records
named in `refuse` are refused as Pipedrive refuses a bad write (400)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from clients.errors import BadRequestError, NotFoundError
from mappings.values import parse_time
from sandbox.dataset import PipedriveSeed
from sandbox.pipedrive.common import ApiError
from sandbox.pipedrive.model import PipedriveModel

Record = dict[str, Any]


class FakePipedrive:
    def __init__(self, seed: PipedriveSeed) -> None:
        self.model = PipedriveModel(seed)
        self.calls: Counter[str] = Counter()
        self.refuse: set[tuple[str, int]] = set()  # (entity, id) whose writes are refused

    def _list(
        self, name: str, ids: Iterable[int] | None, updated_since: datetime | None = None
    ) -> Iterator[Record]:
        collection = getattr(self.model, name)
        wanted = sorted(set(ids)) if ids is not None else None
        self.calls[f"GET /{name}"] += -(-len(wanted) // 100) if wanted is not None else 1
        records = [collection.get(i) for i in wanted] if wanted is not None else collection.values()
        return iter(
            [
                dict(r)
                for r in records
                if r is not None
                and not r.get("is_deleted")
                and (updated_since is None or parse_time(r["update_time"]) >= updated_since)
            ]
        )

    def iter_organizations(
        self,
        *,
        ids: Iterable[int] | None = None,
        updated_since: datetime | None = None,
        **_: Any,
    ) -> Iterator[Record]:
        return self._list("organizations", ids, updated_since)

    def iter_persons(
        self,
        *,
        ids: Iterable[int] | None = None,
        updated_since: datetime | None = None,
        **_: Any,
    ) -> Iterator[Record]:
        return self._list("persons", ids, updated_since)

    def iter_deals(self, *, ids: Iterable[int] | None = None, **_: Any) -> Iterator[Record]:
        return self._list("deals", ids)

    def iter_notes(self, *, updated_since: datetime | None = None, **_: Any) -> Iterator[Record]:
        return self._list("notes", None, updated_since)

    def get_note(self, note_id: int) -> Record:
        self.calls["GET /notes/:id"] += 1
        note = self.model.notes.get(note_id)
        if note is None:
            raise NotFoundError(
                "no such note", service="Pipedrive", method="GET", path="/v1/notes", status=404
            )
        return dict(note)

    def update_note(self, note_id: int, fields: Record) -> Record:
        self.calls["PUT /notes"] += 1
        return self.model.update_note(note_id, dict(fields))

    def create_note(self, fields: Record) -> Record:
        self.calls["POST /notes"] += 1
        return self.model.create_note(dict(fields))

    def _write(self, entity: str, record_id: int, body: Record) -> Record:
        self.calls[f"PATCH /{entity}s"] += 1
        path = f"/v2/{entity}s/{record_id}"
        if (entity, record_id) in self.refuse:
            raise BadRequestError(
                "Pipedrive refused the write", service="Pipedrive", method="PATCH", path=path,
                status=400,
            )  # fmt: skip
        try:
            return getattr(self.model, f"update_{entity}")(record_id, body)  # type: ignore[no-any-return]
        except ApiError as exc:
            error = NotFoundError if exc.status == 404 else BadRequestError
            raise error(
                exc.message, service="Pipedrive", method="PATCH", path=path, status=exc.status
            ) from None

    def update_organization(self, org_id: int, fields: Record) -> Record:
        return self._write("organization", org_id, fields)

    def update_person(self, person_id: int, fields: Record) -> Record:
        return self._write("person", person_id, fields)

    def update_deal(self, deal_id: int, fields: Record) -> Record:
        return self._write("deal", deal_id, fields)

    def create_organization(self, fields: Record) -> Record:
        self.calls["POST /organizations"] += 1
        return self.model.create_organization(dict(fields))

    def create_person(self, fields: Record) -> Record:
        self.calls["POST /persons"] += 1
        return self.model.create_person(dict(fields))

    def writes(self) -> int:
        return sum(n for name, n in self.calls.items() if name.startswith(("PATCH", "POST", "PUT")))
