"""Secure health messaging (MSSanté-like): Socle's SMTP server, mailboxes, and every message a
FHIR Communication (docs/messaging.md)."""
