"""CDA R2 header reader for French CI-SIS documents (fr-documents §2), and its comparison with the
DocumentReference that comes with the document (PDSm).

    header = read_header(data)          # raises CdaError (issues with XPath-ish locations)
    issues = compare_with_metadata(header, docref, patient_ins, "Bundle.entry[1].resource")

One module per concern: `parsing` (hardened XML, read up to the body), `elements` (typed reads
of header elements, each problem collected), `header` (the header sections, the `CdaHeader`
built from them), `times` (HL7 TS to FHIR), `metadata` (the header against the
DocumentReference), `model` (the header, the error, the identifiers' OIDs).
"""

from __future__ import annotations

from .header import read_header
from .metadata import compare_with_metadata
from .model import CdaError, CdaHeader
from .times import hl7_ts_to_fhir

__all__ = ["CdaError", "CdaHeader", "compare_with_metadata", "hl7_ts_to_fhir", "read_header"]
