"""Values and pure decisions: the canonical request, records, retry and breaker rules, prices.

Nothing here does I/O; everything is unit-tested without a database."""
