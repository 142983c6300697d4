"""``editq emulate <provider>``: which emulator module serves which provider."""

from __future__ import annotations

import importlib

#: Provider name -> (emulator module, its config class).
EMULATORS: dict[str, tuple[str, str]] = {
    "fal": ("emulators.fal", "FalEmulatorConfig"),
    "runware": ("emulators.runware", "RunwareEmulatorConfig"),
    "runflow": ("emulators.runflow", "RunflowEmulatorConfig"),
}


def serve(provider: str, host: str, port: int, options: dict[str, object]) -> None:
    """Serve ``provider``'s emulator in the foreground with ``options`` (flat config keys)."""
    module_name, config_name = EMULATORS[provider]
    module = importlib.import_module(module_name)
    config = getattr(module, config_name)(**options)
    module.serve(host=host, port=port, config=config)
