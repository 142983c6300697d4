"""The development harness: embedded services, editq's own processes, the demo.

Imported only by the CLI, the benchmark and the tests; nothing the product runs imports it."""
