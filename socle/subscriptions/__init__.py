"""FHIR Subscriptions (Backport IG and classic R4): docs/platform.md "Subscriptions"."""
