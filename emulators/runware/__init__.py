"""A local Runware: Runware's task API for FLUX.1 Kontext [pro], answered with real Pillow edits.

Build an app with :func:`create_app` and serve it in-process with
:func:`emulators.server.run_in_thread`, or from a command line with :func:`serve`
(``python -m emulators runware --help``). Point a client at ``<url>/v1``.
"""

from __future__ import annotations

import uvicorn

from emulators.runware.app import create_app
from emulators.runware.config import RunwareEmulatorConfig

__all__ = ["RunwareEmulatorConfig", "create_app", "serve"]


def serve(
    host: str = "127.0.0.1", port: int = 8791, config: RunwareEmulatorConfig | None = None
) -> None:
    """Serve a Runware emulator in the foreground until interrupted."""
    app = create_app(config or RunwareEmulatorConfig())
    uvicorn.run(app, host=host, port=port, log_level="info", ws="none")
