"""The HTTP API: producer endpoints, provider webhooks, health and metrics."""
