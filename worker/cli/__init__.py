"""The ``editq`` command: one module per group of subcommands (``main`` assembles them)."""
