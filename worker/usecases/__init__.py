"""The use cases producers, ops and the workers call: jobs, batches, callbacks, provider status.

Entry points (routes, CLI commands, tasks) parse their input, call one of these, and format."""
