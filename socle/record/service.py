"""The shared health record as a service: its write rule, its hooks on the generic interactions
of DocumentReference and Binary, its search parameters and the CapabilityStatement declarations
of the three PDSm actors (producer, consumer, manager).

It has no routes of its own: ITI-65 is a Bundle POSTed to the base, ITI-105 a DocumentReference
create, ITI-67 a type search, ITI-68 a Binary read, and the generic routes serve them all through
the hooks registered here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..contract import Conformance, Runtime, Service
from ..fhir.access import Access
from ..fhir.engine import Engine, EntryRequest
from ..fhir.hooks import TypeHooks
from .consult import check_find_documents, document_query, logical_deletion, retrieve_document
from .pdsm import (
    ACTORS,
    AUTHOR_ORG,
    COMPREHENSIVE_BUNDLE,
    DESIGNATION_TYPE,
    DOCUMENT_REFERENCE,
    FOLDER,
    INTENDED_RECIPIENT,
    IS_ARCHIVED,
    PDSM,
    RECORD_PROFILES,
    SIMPLIFIED_PUBLISH,
    SOURCE_ID,
    SUBMISSION_SET,
)
from .pdsm import search_parameters as pdsm_search_parameters
from .provide import check_provided_bundle, simplified_publish
from .rules import DocumentRules
from .terminology import equivalent_systems, fhir_resources
from .topics import TOPICS

CONFORMANCE = Conformance(
    instantiates=list(ACTORS.values()),
    guides=[f"{PDSM}/ImplementationGuide/ans.fhir.fr.pdsm"],
    profiles={
        "DocumentReference": [
            DOCUMENT_REFERENCE,
            SIMPLIFIED_PUBLISH,
            *sorted(RECORD_PROFILES - {DOCUMENT_REFERENCE, SIMPLIFIED_PUBLISH}),
        ],
        "List": [SUBMISSION_SET, FOLDER],
        "Bundle": [COMPREHENSIVE_BUNDLE],
    },
    # what the record's rules read and check (rules.py, provide.py): not "unknown" to clients
    extensions=[IS_ARCHIVED, INTENDED_RECIPIENT, SOURCE_ID, DESIGNATION_TYPE, AUTHOR_ORG],
    equivalent_systems=equivalent_systems(),
    documentation={
        "DocumentReference": (
            "PDSm document entries (those declaring a PDSm/MHD profile; other DocumentReferences "
            "are plain FHIR): ITI-65 (transaction Bundle to the base), ITI-105 (POST with inline "
            "data), ITI-67 (search: patient and status required, record entries only), metadata "
            "PATCH (status, securityLabel, isArchived only), DELETE = entered-in-error by the "
            "author"
        ),
        "Binary": "ITI-68: GET Binary/{id} streams the document as sent (Accept FHIR for JSON)",
        "List": "ITI-66: SubmissionSets and Folders (code, patient, status, designationType…)",
    },
)


def _find_documents(pairs: list[tuple[str, str]], access: Access) -> list[tuple[str, str]]:
    check_find_documents(pairs, access)
    return document_query(pairs)


def install(engine: Engine) -> None:
    """The record's write rule on every unit of work, and its hooks on the generic interactions."""
    engine.write_rules.append(DocumentRules(engine.content))
    engine.hooks.register(
        "DocumentReference",
        TypeHooks(search=_find_documents, delete=logical_deletion, create=simplified_publish),
    )
    engine.hooks.register("Binary", TypeHooks(content=retrieve_document))
    engine.hooks.bundle_checks.append(check_provided_bundle)


async def ensure_search_parameters(engine: Engine) -> None:
    """The PDSm search parameters, as SearchParameter resources (idempotent: unchanged ones make
    no new version; several workers may run it at once)."""
    entries = [
        EntryRequest("PUT", f"SearchParameter/{sp['id']}", sp) for sp in pdsm_search_parameters()
    ]
    await engine.transaction(entries, engine.platform(), "update")


@contextlib.asynccontextmanager
async def _lifespan(runtime: Runtime) -> AsyncIterator[None]:
    await ensure_search_parameters(runtime.engine)
    yield


service = Service(
    name="record",
    install=install,
    lifespan=_lifespan,
    conformance=CONFORMANCE,
    topics=TOPICS,
    terminology=fhir_resources,
    settings=("SOCLE_MAX_DOCUMENT_BYTES",),
)
