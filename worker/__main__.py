"""``python -m worker`` is the ``editq`` command."""

from worker.cli.main import main

main()
