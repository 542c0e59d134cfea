"""The entries of a unit of work: what a client asks for (one REST interaction or one Bundle
entry) and what the engine answers for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .datetimes import http_date
from .outcome import Issue
from .search.executor import SearchResult
from .search.query import SearchQuery


@dataclass
class EntryRequest:
    method: str
    url: str
    resource: Any = None
    full_url: str | None = None
    if_none_exist: str | None = None
    if_match: str | None = None
    patch_type: str | None = None  # PATCH body: "json" (RFC 6902), "merge" (RFC 7386), "fhirpath"
    where: str = ""  # FHIRPath location of the entry, for error messages
    # The resource was checked already by the engine's validators (`Engine.validators`), in
    # another process of the platform's own work (a bulk import's workers): the unit of work
    # does not validate it again. Honoured only for the platform's context, for a POST or PUT
    # whose references the unit of work leaves as they are; any other write is validated.
    validated: bool = False


@dataclass
class EntryResponse:
    status: int
    rtype: str | None = None
    id: str | None = None
    version: int | None = None
    last_updated: datetime | None = None
    content: str | None = None
    outcome: dict[str, Any] | None = None
    # a write's validation warnings (an OperationOutcome when the client asks for one, and in
    # a Bundle entry's response.outcome)
    warnings: list[Issue] = field(default_factory=list)
    compartment: str | None = None
    # a GET search entry: (result, query, path, parameters), rendered by the HTTP layer
    search: tuple[SearchResult, SearchQuery, str, list[tuple[str, str]]] | None = None

    @property
    def location(self) -> str | None:
        if self.rtype and self.id and self.version:
            return f"{self.rtype}/{self.id}/_history/{self.version}"
        return None

    @property
    def etag(self) -> str | None:
        return f'W/"{self.version}"' if self.version else None

    def headers(self) -> dict[str, str]:
        out = {}
        if self.etag:
            out["ETag"] = self.etag
        if self.last_updated:
            out["Last-Modified"] = http_date(self.last_updated)
        return out
