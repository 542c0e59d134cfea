"""The bulk data service: `$export` (system, Patient, Group), `$import` over HTTP, and the
asynchronous requests they and `Prefer: respond-async` searches and Bundles share (the status
URL, cancel, files, expiry). `socle import` (the command) is in the same package."""

from __future__ import annotations

from ..contract import Conformance, Service
from ..fhir.engine import Engine
from . import async_requests, export, http_import, kickoff
from .cohorts import COHORT_PROFILE, MEMBER_FILTER, check_cohort_group

BULK_DATA_SERVER = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
BULK_DATA_IG = "http://hl7.org/fhir/uv/bulkdata/ImplementationGuide/hl7.fhir.uv.bulkdata"


def install(engine: Engine) -> None:
    engine.hooks.respond_async = async_requests.respond_async


service = Service(
    name="bulk",
    operations=[*kickoff.routes, *async_requests.routes],
    definitions=kickoff.OPERATIONS,
    install=install,
    validators=[check_cohort_group],
    jobs=[*async_requests.JOBS, *export.JOBS, *http_import.JOBS],
    conformance=Conformance(
        instantiates=[BULK_DATA_SERVER],
        guides=[BULK_DATA_IG],
        profiles={"Group": [COHORT_PROFILE]},
        # the member filters of cohort Groups, checked by check_cohort_group
        extensions=[MEMBER_FILTER],
        documentation={
            "Group": "Export cohorts: a Group listing its members, or a Bulk Cohort Group "
            "(member-filter modifier extensions, FHIR queries AND-ed; its members are worked "
            "out at each Group/$export, as the exporting client sees them)"
        },
    ),
    settings=("SOCLE_EXPORT_TTL", "SOCLE_EXPORT_FILE_BYTES", "SOCLE_EXPORT_DIR"),
)
