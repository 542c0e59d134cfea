"""Storage of FHIR resources in PostgreSQL: current rows, history and index rows."""
