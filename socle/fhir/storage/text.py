"""Resources as JSON text with ``resourceType`` first.

jsonb keeps keys sorted by length then bytes, so ``content::text`` puts ``id`` and ``meta``
before ``resourceType``. JSON does not order keys, but people and some clients read the type
first; the read paths therefore send ``{"resourceType": "<rtype>", `` followed by the rest of the
object, built in the SQL that reads it (no decoding in Python). The cost is one jsonb key removal
per row, small next to the text conversion itself (measured in docs/architecture.md).
"""

from __future__ import annotations


def content_text(rtype: str, content: str) -> str:
    """SQL for the JSON text of ``content`` (jsonb, NULL for a deletion) of type ``rtype`` (a
    column: type names need no escaping), ``resourceType`` first."""
    # Stored resources always have an id, so the rest is never empty; ``? 'id'`` (a key look-up)
    # keeps anything else valid JSON, in jsonb's order.
    return (
        f"CASE WHEN NOT {content} ? 'id' THEN {content}::text "
        f"ELSE '{{\"resourceType\": \"' || {rtype} || '\", ' "
        f"|| substr(({content} - 'resourceType')::text, 2) END"
    )
