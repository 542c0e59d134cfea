"""The identity service's operations, as declared OperationDefinitions: the INS ones
(``$ins-lookup`` in `lookup`, ``$ins-qualify`` in `qualify`) and the identitovigilance ones
(``$merge``, ``$unmerge`` in `merge`; ``$duplicates``, ``$duplicate-dismiss`` in `worklist`);
`socle.identity.routes` lists their routes."""

from __future__ import annotations

from .lookup import LOOKUP
from .merge import MERGE, UNMERGE
from .qualify import QUALIFY
from .worklist import DISMISS, DUPLICATES

OPERATIONS = [LOOKUP, QUALIFY, MERGE, UNMERGE, DUPLICATES, DISMISS]
