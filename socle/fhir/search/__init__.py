"""FHIR search: parse the request, plan SQL over the index tables, page through results."""
