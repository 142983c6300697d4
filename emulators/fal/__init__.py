"""A local fal.ai: fal's queue protocol for FLUX.1 Kontext, answered with real Pillow edits.

Build an app with :func:`create_app` and serve it in-process with
:func:`emulators.server.run_in_thread`, or from a command line with :func:`serve`
(``python -m emulators fal --help``).
"""

from __future__ import annotations

import uvicorn

from emulators.fal.app import create_app
from emulators.fal.config import FalEmulatorConfig

__all__ = ["FalEmulatorConfig", "create_app", "serve"]


def serve(
    host: str = "127.0.0.1", port: int = 8790, config: FalEmulatorConfig | None = None
) -> None:
    """Serve a fal emulator in the foreground until interrupted."""
    app = create_app(config or FalEmulatorConfig())
    uvicorn.run(app, host=host, port=port, log_level="info", ws="none")
