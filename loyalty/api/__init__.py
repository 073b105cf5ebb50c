"""The integration API for client systems: program-scoped keys, idempotent writes."""
