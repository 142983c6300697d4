"""``python -m emulators.runware``: serve the Runware emulator from a command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.runware import RunwareEmulatorConfig, serve


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m emulators.runware", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--latency", type=float, default=2.0, help="mean seconds running")
    parser.add_argument("--jitter", type=float, default=0.5, help="seconds either side of it")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="tasks running at once (0: no limit)"
    )
    parser.add_argument("--rate-5xx", type=float, default=0.0, help="share of submits failing 503")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of submits refused 429")
    parser.add_argument("--rate-invalid", type=float, default=0.0, help="share refused 400")
    parser.add_argument("--rate-moderated", type=float, default=0.0, help="share moderated")
    parser.add_argument("--result-ttl", type=float, default=3600.0, help="output lifetime, s")
    parser.add_argument("--seed", type=int, default=None, help="repeatable fault draws")
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any)")
    parser.add_argument("--public-base-url", default=None, help="where returned URLs start")
    parser.add_argument(
        "--webhook-shape", choices=("data", "flat"), default="data", help="callback body shape"
    )
    options = parser.parse_args(argv)
    config = RunwareEmulatorConfig(
        latency=options.latency,
        jitter=options.jitter,
        concurrency=options.concurrency or None,
        rate_5xx=options.rate_5xx,
        rate_429=options.rate_429,
        rate_422=options.rate_invalid,
        rate_moderated=options.rate_moderated,
        result_ttl=options.result_ttl,
        seed=options.seed,
        api_key=options.api_key,
        public_base_url=options.public_base_url,
        webhook_shape=options.webhook_shape,
    )
    serve(host=options.host, port=options.port, config=config)


if __name__ == "__main__":
    main()
