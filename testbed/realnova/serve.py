"""Serve one OpenStack WSGI application under gunicorn, inside the real-Nova venv.

    python serve.py --port PORT [--threads N] MODULE:ATTRIBUTE

The OpenStack applications parse sys.argv with oslo.config when they load, so gunicorn's own
command line must not reach them: this launcher gives gunicorn its options in code and leaves
sys.argv empty. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gunicorn.app.base import BaseApplication


class _App(BaseApplication):
    def __init__(self, target: str, options: dict):
        self.target = target
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("target")
    args = parser.parse_args()
    sys.argv = [args.target.partition(":")[0]]
    options = {
        "bind": f"127.0.0.1:{args.port}",
        "workers": 1,
        "threads": args.threads,
        "timeout": 120,
        "accesslog": "-",
        "control_socket_disable": True,
    }
    _App(args.target, options).run()


if __name__ == "__main__":
    main()
