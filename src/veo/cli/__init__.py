"""The ``veo`` command. Operator commands (``veo.cli.operator``: migrate, serve, users, flow,
models, rotate-secret) run beside the service's database; user commands (``veo.cli.user``:
generate, jobs, batch) talk to a running service over HTTP and need neither a database nor
``VEO_SECRET_KEY``; ``veo demo`` runs the whole service offline."""

from __future__ import annotations

import argparse

from veo.cli import operator, user


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="veo", description="Veo video service")
    sub = parser.add_subparsers(dest="cmd", required=True)
    operator.add_parsers(sub)
    demo = sub.add_parser("demo", help="run the offline sandbox demo")
    demo.add_argument("--once", action="store_true", help="exit when both jobs finished")
    demo.add_argument("--port", type=int, default=None)
    user.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.cmd in user.COMMANDS:
        return user.run(args)
    if args.cmd == "demo":
        from veo.sandbox.demo import run_demo

        return run_demo(once=args.once, port=args.port)
    return operator.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
