"""The operators' view of the jobs, over HTTP (administrator or operator tokens only):
`GET /admin/jobs` (`state`, `kind`, `limit`), `GET /admin/jobs/{id}`,
`POST /admin/jobs/{id}/retry`, `POST /admin/jobs/{id}/cancel`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..fhir.access import Role
from ..fhir.outcome import FhirError
from ..fhir.rest.requests import access_of, engine_of
from . import queue

OPERATORS = frozenset({Role.ADMIN, Role.OPERATOR})


def _require_operator(request: Request) -> None:
    access = access_of(request)
    if access.role not in OPERATORS:
        raise FhirError.of(403, "forbidden", "Jobs are for administrators and operators only")


def _json(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in job.items()}


def _job_id(request: Request) -> int:
    raw = request.path_params["job_id"]
    if not raw.isdigit():
        raise FhirError.of(400, "value", f"{raw!r} is not a job id")
    return int(raw)


async def list_jobs(request: Request) -> Response:
    _require_operator(request)
    state = request.query_params.get("state")
    if state is not None and state not in queue.STATES:
        raise FhirError.of(400, "value", f"state must be one of {', '.join(queue.STATES)}")
    raw_limit = request.query_params.get("limit", "100")
    if not raw_limit.isdigit() or not 0 < int(raw_limit) <= 1000:
        raise FhirError.of(400, "value", "limit must be a whole number from 1 to 1000")
    async with engine_of(request).pool.connection() as conn:
        jobs = await queue.list_jobs(conn, state, request.query_params.get("kind"), int(raw_limit))
    return JSONResponse({"jobs": [_json(j) for j in jobs]})


async def get_job(request: Request) -> Response:
    _require_operator(request)
    async with engine_of(request).pool.connection() as conn:
        job = await queue.get_job(conn, _job_id(request))
    if job is None:
        raise FhirError.of(404, "not-found", "No such job")
    return JSONResponse(_json(job))


async def _act(request: Request, action: Any, refused: str) -> dict[str, Any]:
    """An operator's action on one job (`queue.retry`, `queue.cancel`); 409 when the job's
    state does not allow it."""
    _require_operator(request)
    job_id = _job_id(request)
    async with engine_of(request).pool.connection() as conn:
        job = await action(conn, job_id)
    if job is None:
        raise FhirError.of(409, "conflict", refused)
    return job  # type: ignore[no-any-return]


async def retry_job(request: Request) -> Response:
    job = await _act(request, queue.retry, "Only a dead, cancelled or waiting job is retried")
    return JSONResponse(_json(job))


async def cancel_job(request: Request) -> Response:
    job = await _act(request, queue.cancel, "Only a waiting or running job is cancelled")
    return JSONResponse(_json(job), status_code=202 if job["state"] == "running" else 200)


routes = [
    Route("/admin/jobs", list_jobs, methods=["GET"]),
    Route("/admin/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/admin/jobs/{job_id}/retry", retry_job, methods=["POST"]),
    Route("/admin/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
]
