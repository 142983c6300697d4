"""The pipeline: dispatch, submit, poll, webhooks, finalize, reconcile and the scheduler's loop."""
