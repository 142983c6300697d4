"""``python -m emulators.runflow``: serve the Runflow emulator from a command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.runflow import RunflowEmulatorConfig, serve


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m emulators.runflow", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8792)
    parser.add_argument("--latency", type=float, default=2.0, help="mean seconds running")
    parser.add_argument("--jitter", type=float, default=0.5, help="seconds either side of it")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="runs running at once (0: no limit)"
    )
    parser.add_argument("--rate-5xx", type=float, default=0.0, help="share of creates failing 503")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of creates refused 429")
    parser.add_argument("--rate-422", type=float, default=0.0, help="share of creates refused 422")
    parser.add_argument("--rate-moderated", type=float, default=0.0, help="share moderated")
    parser.add_argument("--result-ttl", type=float, default=3600.0, help="output URL lifetime, s")
    parser.add_argument("--seed", type=int, default=None, help="repeatable fault draws")
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any)")
    parser.add_argument(
        "--callback-secret", default=None, help="the whsec_... secret signing callbacks"
    )
    parser.add_argument("--public-base-url", default=None, help="where returned URLs start")
    options = parser.parse_args(argv)
    extra = {"callback_secret": options.callback_secret} if options.callback_secret else {}
    config = RunflowEmulatorConfig(
        latency=options.latency,
        jitter=options.jitter,
        concurrency=options.concurrency or None,
        rate_5xx=options.rate_5xx,
        rate_429=options.rate_429,
        rate_422=options.rate_422,
        rate_moderated=options.rate_moderated,
        result_ttl=options.result_ttl,
        seed=options.seed,
        api_key=options.api_key,
        public_base_url=options.public_base_url,
        **extra,
    )
    serve(host=options.host, port=options.port, config=config)


if __name__ == "__main__":
    main()
