"""``python -m openckpt.hub``: migrate, create the first admin if needed, and serve (used by tests and scripts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from openckpt.hub.server import bootstrap, serve
from openckpt.hub.settings import Settings


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m openckpt.hub")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--database-url")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args()
    settings = Settings.from_env(
        data_dir=args.data_dir, host=args.host, port=args.port, workers=args.workers, database_url=args.database_url
    )
    token = bootstrap(settings)
    if token:
        print(f"admin-token {token}", flush=True)
    print(f"listening {settings.public_url}", file=sys.stderr, flush=True)
    serve(settings, log_level=args.log_level)


if __name__ == "__main__":
    main()
