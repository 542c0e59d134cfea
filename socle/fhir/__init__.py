"""The FHIR R4 engine: model, validation, storage, search, bundles and REST."""
