"""Socle: an open-source regional e-health platform for France on HL7 FHIR R4."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
