"""An in-memory Planhat at the client seam: the calls the tasks make of `PlanhatClient`, served
by the sandbox Planhat's store (Planhat's matching, validation and answers) without HTTP, and
answered through the real client's answer parser. Counts its calls per method."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from clients.errors import NotFoundError
from clients.planhat import BulkUpsertResult, parse_bulk_answer
from sandbox.dataset import PlanhatSeed
from sandbox.planhat.store import PlanhatStore

Record = dict[str, Any]


class FakePlanhat:
    def __init__(self, seed: PlanhatSeed | None = None) -> None:
        self.store = PlanhatStore(seed or PlanhatSeed())
        self.calls: Counter[str] = Counter()
        #: models whose list calls come back empty (a record Planhat will not show)
        self.hidden: set[str] = set()

    def records(self, model: str) -> list[Record]:
        return list(self.store.cols[model].records.values())

    def bulk_upsert(self, model: str, items: Iterable[Mapping[str, Any]]) -> BulkUpsertResult:
        self.calls[f"PUT /{model}"] += 1
        chunk = [dict(item) for item in items]
        body = self.store.bulk_upsert(model, [dict(item) for item in chunk])
        partial = bool(body["createdErrors"] or body["updatedErrors"])
        outcomes, unattributed = parse_bulk_answer(model, chunk, body, 206 if partial else 200)
        return BulkUpsertResult(
            model=model,
            items=outcomes,
            requests=1,
            partial=partial,
            unattributed_errors=unattributed,
        )

    def get(self, model: str, key: str) -> Record:
        self.calls[f"GET /{model}/:id"] += 1
        record = self.store.find(model, key)
        if record is None:
            raise NotFoundError(
                f"Planhat has no {model[:-1]} {key}", service="Planhat", method="GET",
                path=f"/{model}/{key}", status=404,
            )  # fmt: skip
        return dict(record)

    def iter_lean_companies(self) -> Iterator[Record]:
        self.calls["GET /leancompanies"] += 1
        if "companies" in self.hidden:
            return iter(())
        fields = ("_id", "externalId", "sourceId", "name", "slug")
        return iter([{f: c[f] for f in fields if f in c} for c in self.records("companies")])

    def iter_records(
        self,
        model: str,
        *,
        company_id: str | Sequence[str] | None = None,
        filters: Mapping[str, str] | None = None,
        select: Sequence[str] | None = None,
        sort: str = "_id",
    ) -> Iterator[Record]:
        self.calls[f"GET /{model}"] += 1
        if model in self.hidden:
            return iter(())
        wanted = {company_id} if isinstance(company_id, str) else set(company_id or ())
        rows = [
            r
            for r in self.records(model)
            if (not wanted or r.get("companyId") in wanted)
            and all(r.get(k) == v for k, v in (filters or {}).items())
        ]
        if select:
            rows = [{k: r[k] for k in select if k in r} for r in rows]
        return iter(rows)
