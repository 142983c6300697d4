"""``python -m worker`` is the ``editq`` command."""

from worker.cli import main

main()
