"""A local Runflow: Runflow's run API for FLUX.1 Kontext [pro], answered with real Pillow edits.

Build an app with :func:`create_app` and serve it in-process with
:func:`emulators.server.run_in_thread`, or from a command line with :func:`serve`
(``python -m emulators runflow --help``).
"""

from __future__ import annotations

import uvicorn

from emulators.runflow.app import create_app
from emulators.runflow.config import RunflowEmulatorConfig

__all__ = ["RunflowEmulatorConfig", "create_app", "serve"]


def serve(
    host: str = "127.0.0.1", port: int = 8792, config: RunflowEmulatorConfig | None = None
) -> None:
    """Serve a Runflow emulator in the foreground until interrupted."""
    app = create_app(config or RunflowEmulatorConfig())
    uvicorn.run(app, host=host, port=port, log_level="info", ws="none")
