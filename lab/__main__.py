"""``python -m lab up|down|status``: the lab from a shell, without invoke.

The invoke tasks call the same functions; this entry point exists so the lab can be
driven (and debugged) on a machine where only the package is importable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from lab.lifecycle import down, status, up
from lab.state import DEFAULT_STATE_DIR
from lab.topology import DEFAULT_PREFIX, LabError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"namespace name prefix (default: {DEFAULT_PREFIX}); labs with different "
        "prefixes can be up at the same time",
    )
    p.add_argument("--control-planes", type=int, default=1)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--user", help="lab login user (default: kblab for kbl, else <prefix>lab)")
    p.add_argument(
        "--single-nic",
        action="store_true",
        help="the bastion has one NIC, on the private network, and reaches the emulated "
        "internet through it (a cloud bastion with a 1:1 NAT public address)",
    )
    p.add_argument(
        "--sudo-password-env",
        metavar="VAR",
        help="make sudo require a password, read from this environment variable",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help=f"default: {DEFAULT_STATE_DIR} for prefix {DEFAULT_PREFIX}, "
        f"{DEFAULT_STATE_DIR}/lab-<prefix> for others",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    for key, value in data.items():
        if key == "hosts" and isinstance(value, list):
            print("hosts:")
            for h in value:
                print(
                    f"  {h['name']:<10} {h['role']:<14} {h.get('ssh_address', ''):<14}"
                    f" ns={h['namespace']} sshd={h.get('sshd_pid')}"
                    + ("" if h.get("sshd_running", True) else " (NOT RUNNING)")
                )
        else:
            print(f"{key}: {value}")


def _defaults(args: argparse.Namespace) -> None:
    """Per-prefix defaults, so `--prefix kbp1` alone gives a lab that can run beside the
    default one (its own user and state_dir)."""
    default = args.prefix == DEFAULT_PREFIX
    if args.user is None:
        args.user = "kblab" if default else f"{args.prefix}lab"
    if args.state_dir is None:
        args.state_dir = DEFAULT_STATE_DIR if default else DEFAULT_STATE_DIR / f"lab-{args.prefix}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _defaults(args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        if args.action == "up":
            password = None
            if args.sudo_password_env:
                password = os.environ.get(args.sudo_password_env)
                if password is None:
                    print(f"error: ${args.sudo_password_env} is not set", file=sys.stderr)
                    return 2
            t0 = time.monotonic()
            state = up(
                name_prefix=args.prefix,
                control_planes=args.control_planes,
                workers=args.workers,
                user=args.user,
                sudo_password=password,
                state_dir=args.state_dir,
                single_nic=args.single_nic,
            )
            elapsed = round(time.monotonic() - t0, 3)
            data = {**state.to_json(), "elapsed_seconds": elapsed}
            if args.json:
                _print(data, True)
            else:
                print(
                    f"lab {state.prefix} up in {elapsed}s: bastion {state.bastion.ssh_address} "
                    f"(operator link {state.operator_iface} {state.operator_network}), "
                    f"{state.control_planes} control plane(s), {state.workers} worker(s)\n"
                    f"nornir config: {state.nornir_config}\n"
                    f"ssh: ssh -F {state.ssh_config} k8s-m0"
                )
        elif args.action == "down":
            _print(down(args.prefix, args.user, args.state_dir), args.json)
        else:
            data = status(args.prefix, args.state_dir)
            _print(data, args.json)
            return 0 if data.get("healthy") else 1
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python -m lab status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
