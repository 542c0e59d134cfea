"""FHIR operations ($name), one module each, registered in the CapabilityStatement."""
