"""The ``voxline`` command: ``serve``, ``check``, ``call``, ``dial`` and ``test``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import msgspec

from agent import call_command, conversation_tests_command, sip_dial
from agent.config import SipConfig, load_config
from pipeline.errors import ConfigError

DEFAULT_CONFIG = "configs/default.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxline", description="Real-time voice agent server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve calls for an agent")
    serve.add_argument("--config", default=DEFAULT_CONFIG, help="agent file (.yaml or .toml)")
    serve.add_argument("--host", help="address to bind (default: the config's server.host)")
    serve.add_argument("--port", type=int, help="port to bind (default: the config's server.port)")
    serve.add_argument(
        "--sip",
        metavar="HOST:PORT",
        help="take SIP calls over UDP there (instead of the config's server.sip.listen)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve beyond loopback without API keys (anyone who reaches it may call)",
    )
    check = commands.add_parser("check", help="validate agent files without starting")
    check.add_argument("files", nargs="+")
    call_command.add_parser(commands)
    sip_dial.add_parser(commands)
    conversation_tests_command.add_parser(commands)
    args = parser.parse_args(argv)

    if args.command == "call":
        return call_command.run(args)
    if args.command == "dial":
        return sip_dial.run(args)
    if args.command == "test":
        return conversation_tests_command.run(args)

    if args.command == "check":
        failed = 0
        for name in args.files:
            try:
                load_config(name)
            except ConfigError as error:
                print(f"{name}: {error}", file=sys.stderr)
                failed += 1
            else:
                print(f"{name}: ok")
        return 1 if failed else 0

    from agent.auth import exposure_problem, load_keys

    try:
        config = load_config(args.config)
        keys = load_keys(config.server.auth, os.environ)
    except ConfigError as error:
        print(f"{args.config}: {error}", file=sys.stderr)
        return 2
    if args.sip:  # checked as the file's section is (a wildcard host needs public_address)
        section = {**msgspec.to_builtins(config.server.sip), "listen": [f"udp:{args.sip}"]}
        try:
            sip = msgspec.convert(section, SipConfig)
        except msgspec.ValidationError as error:
            print(f"voxline: --sip {args.sip}: {error}", file=sys.stderr)
            return 2
        server = msgspec.structs.replace(config.server, sip=sip)
        config = msgspec.structs.replace(config, server=server)
    host = args.host or config.server.host
    problem = exposure_problem(host, keys, insecure=args.insecure)
    if problem is not None:
        print(f"voxline: {problem}", file=sys.stderr)
        return 2
    from agent.memory_probe import install as install_memory_probe
    from agent.server import serve as run_server
    from agent.tracing_logs import configure_logging

    configure_logging(logging.INFO)  # a call's lines carry its id (and its trace id)
    install_memory_probe()  # debug only, when VOXLINE_MEMORY_PROBE is set (bench/soak.py)
    try:
        run_server(config, host, args.port, keys=keys)
    except ConfigError as error:  # what is checked as the server starts (server.tracing)
        print(f"{args.config}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
