"""``python -m emulators <provider>``: serve a provider emulator without editq installed.

The options are those of ``editq emulate``; see ``python -m emulators --help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emulators.registry import EMULATORS, serve


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__)
    parser.add_argument("provider", choices=sorted(EMULATORS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--latency", type=float, default=1.0, help="mean seconds running")
    parser.add_argument("--jitter", type=float, default=0.3, help="seconds either side of it")
    parser.add_argument("--concurrency", type=int, default=100, help="0: no limit")
    for rate in (
        "5xx",
        "429",
        "422",
        "moderated",
        "blackout",
        "flagged",
        "unchanged",
        "wrong-size",
    ):
        parser.add_argument(f"--rate-{rate}", type=float, default=0.0, help=f"share {rate}")
    parser.add_argument("--account-limit", type=int, default=None, help="429 beyond it")
    parser.add_argument("--result-ttl", type=float, default=3600.0, help="output lifetime, s")
    parser.add_argument("--seed", type=int, default=None, help="repeatable fault draws")
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any)")
    parser.add_argument("--callback-secret", default=None, help="runflow: the whsec_ secret")
    parser.add_argument(
        "--rewrite-host",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="connect to TO (host:port) for URLs naming FROM, keeping the Host header",
    )
    options = parser.parse_args(argv)
    config: dict[str, object] = {
        "latency": options.latency,
        "jitter": options.jitter,
        "concurrency": options.concurrency or None,
        "rate_5xx": options.rate_5xx,
        "rate_429": options.rate_429,
        "rate_422": options.rate_422,
        "rate_moderated": options.rate_moderated,
        "rate_blackout": options.rate_blackout,
        "rate_flagged": options.rate_flagged,
        "rate_unchanged": options.rate_unchanged,
        "rate_wrong_size": options.rate_wrong_size,
        "account_limit": options.account_limit,
        "result_ttl": options.result_ttl,
        "seed": options.seed,
        "api_key": options.api_key,
        "rewrite_hosts": dict(item.partition("=")[::2] for item in options.rewrite_host),
    }
    if options.provider == "runflow" and options.callback_secret:
        config["callback_secret"] = options.callback_secret
    serve(options.provider, options.host, options.port, config)


if __name__ == "__main__":
    main()
