"""The record's subscription topic (socle/fhir/topics.py): a document shared to a patient's
record, the ANS *Notification d'évènements* "dépôt de document"."""

from __future__ import annotations

from ..fhir.topics import Topic

DOCUMENT_SHARED = Topic(
    "document-shared",
    "Document shared to the record",
    "DocumentReference",
    ("create",),
    ("patient", "subject", "type", "category"),
    "%current.status = 'current'",
    "A document is shared to the patient's record (ANS Notification d'évènements: dépôt "
    "de document).",
)
TOPICS = (DOCUMENT_SHARED,)
