"""Background jobs on PostgreSQL (docs/platform.md): the outbox of writes (`events`), the job
queue (`queue`), job kinds (`kinds`, declared by services in `Service.jobs`), the worker
(`runtime`) that `socle serve` and `socle worker` run (`serve`), and the operators' API
(`admin`) and commands (`cli`)."""

from .kinds import JobContext, JobKind
from .queue import enqueue

__all__ = ["JobContext", "JobKind", "enqueue"]
