"""The professional workspace (``/pro/…``): find a patient, the patient's summary, share a
document, break-glass, the identitovigilance work-list, my recent accesses. Every page reads and
writes through the engine, or through the API's own handlers called in process
(:mod:`.calls`), with the signed-in professional's Access: the same policy and audit as the API."""
