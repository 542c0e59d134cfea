"""The FHIR REST interface (HTTP), on Starlette."""
