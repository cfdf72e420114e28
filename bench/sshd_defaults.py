"""Does a stock sshd on the bastion limit N = 200? (issue 16 item 4)

    sudo .venv/bin/python bench/sshd_defaults.py --prefix kbf3 [--n 200] [--reps 2]

The lab's sshds allow ``MaxStartups 200:30:400`` and ``MaxSessions 200`` (lab/hosts.py).
This builds a lab of N (1 control plane + N-1 workers), puts the bastion's sshd back to
OpenSSH's defaults for both (the two lines removed, sshd reloaded with SIGHUP), and runs
workload A with kubebastion, the raw-Paramiko floor and pyinfra, interleaved. What it
shows: which tool a stock bastion stops, and so which setting lifts it. Results in
bench/work/sshd-defaults.json, and in bench/work/results.json when there is one
(``bench/run --report-only`` then renders them in results.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import bench
import lab

LIMITS = ("MaxStartups", "MaxSessions")


def stock_limits(state: lab.LabState) -> None:
    """The bastion's sshd with OpenSSH's defaults for LIMITS (MaxStartups 10:30:100,
    MaxSessions 10), reloaded in place."""
    bastion = state.bastion
    config = bastion.sshd_config
    kept = [line for line in config.read_text().splitlines()
            if line.split(" ", 1)[0] not in LIMITS]
    config.write_text("\n".join(kept) + "\n")
    os.kill(bastion.sshd_pid, signal.SIGHUP)  # our lab's sshd: lab.json recorded its pid
    time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="kbf3")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--tools", default="kubebastion,floor,pyinfra")
    args = parser.parse_args()
    bench.use_prefix(args.prefix)
    tools = args.tools.split(",")
    out: dict[str, object] = {"n": args.n, "settings": "OpenSSH defaults on the bastion: "
                              "MaxStartups 10:30:100, MaxSessions 10", "runs": []}
    runs: list[dict[str, object]] = []
    with bench.lab_phase(f"N={args.n} stock sshd limits on the bastion", 3600):
        state, _ = bench.timed_up(1, args.n - 1)
        stock_limits(state)
        state = lab.load_state(state.state_dir) or state
        setup = bench.write_setup(state, args.n, "sshd-defaults")
        for rep in range(args.reps):
            for tool in tools:
                command = bench.tool_command(tool, "A", setup)
                assert command is not None
                log = setup.dir / "logs" / f"{tool}-{rep}.log"
                sample = bench.run_once(command[0], command[1], setup, log)
                text = log.read_text(errors="replace").strip().splitlines()
                runs.append({"tool": tool, "rep": rep, "wall": sample.wall, "rc": sample.rc,
                             "bastion_logins": sample.logins.get("bastion", 0),
                             "last_lines": text[-3:]})
                print(f"  {tool:12} rep {rep + 1}: {sample.wall:.2f} s rc={sample.rc} "
                      f"bastion logins {sample.logins.get('bastion', 0)} "
                      f"{'' if sample.rc == 0 else text[-1:]}", flush=True)
        log_text = state.bastion.sshd_log.read_text(errors="replace")
        out["bastion_sshd_log"] = {
            "connections dropped past MaxStartups": log_text.count("past MaxStartups"),
            "lines naming a session limit": sum("session" in line.lower() and (
                "max" in line.lower() or "too many" in line.lower())
                for line in log_text.splitlines()),
        }
    out["runs"] = runs
    path = bench.WORK / "sshd-defaults.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    if bench.RESULTS_JSON.exists():  # `bench/run --report-only` shows it in results.md
        results = json.loads(bench.RESULTS_JSON.read_text())
        results["sshd_defaults"] = out
        bench.RESULTS_JSON.write_text(json.dumps(results, indent=1))
    print(json.dumps(out["bastion_sshd_log"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
