"""Unique ids for the request path without a system call each.

``uuid.uuid4()`` reads 16 bytes from the kernel (``getrandom``) every call: an audited read made
two of them (its request id and its AuditEvent id), two system calls of ~15 per read. These ids
only need to be unique, never secret (they grant nothing: an AuditEvent is served by the
policy's scope, a request id is a detail of its record): a 64-bit random prefix drawn once per
process (again in a forked child, so workers never share one) followed by a 64-bit counter.
Two processes collide only if their prefixes do (about 1 in 10^19 per pair).
"""

from __future__ import annotations

import itertools
import os

_prefix = ""
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8).hex()
    _counter = itertools.count()


_reseed()
os.register_at_fork(after_in_child=_reseed)


def unique_hex() -> str:
    """32 lowercase hex digits, unique (the form of ``uuid4().hex``)."""
    return f"{_prefix}{next(_counter):016x}"


def unique_uuid() -> str:
    """A unique id shaped as a UUID (8-4-4-4-12 hex digits; a valid FHIR id)."""
    p = _prefix
    n = f"{next(_counter):016x}"
    return f"{p[:8]}-{p[8:12]}-{p[12:16]}-{n[:4]}-{n[4:]}"
