"""Local stand-ins for the hosted image-edit providers, for development, demos, tests, benchmarks.

Each emulator speaks its provider's wire protocol, really edits the image (see
:mod:`emulators.imaging`) and can be made slow, busy or faulty on purpose (see
:mod:`emulators.faults`). :func:`emulators.server.run_in_thread` serves any of them in-process.
"""
