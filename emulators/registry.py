"""Which module emulates which provider, and serving one by name.

``editq emulate <provider>`` and ``python -m emulators <provider>`` both come here, so
each emulator has one command line.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

#: Provider name -> (emulator module, its config class). Each module has ``serve``.
EMULATORS: dict[str, tuple[str, str]] = {
    "fal": ("emulators.fal", "FalEmulatorConfig"),
    "runware": ("emulators.runware", "RunwareEmulatorConfig"),
    "runflow": ("emulators.runflow", "RunflowEmulatorConfig"),
}


def serve(provider: str, host: str, port: int, options: Mapping[str, object]) -> None:
    """Serve ``provider``'s emulator in the foreground, configured by flat ``options``."""
    module_name, config_name = EMULATORS[provider]
    module = importlib.import_module(module_name)
    config = getattr(module, config_name)(**options)
    module.serve(host=host, port=port, config=config)
