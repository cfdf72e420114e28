"""The benchmark's workloads, shared by the driver (peers' files) and kb_workload.py."""

from __future__ import annotations

#: Workload A, batched into one command line for the peers that run one command per host
#: (pyinfra exec, ansible ad-hoc, ssh): the same facts kubebastion's check script prints.
CHECK_COMMANDS = ("whoami", "sudo -n true", "python3 --version", "cat /etc/os-release")
CHECK_BATCH = "whoami; sudo -n true && echo sudo=ok; python3 --version; cat /etc/os-release"

#: Workload B: a root-only (0600, in /root which is 0700) file of 5 KB on every host.
SECRET_FILE = "/root/kubebastion-bench-5k.conf"
SECRET_SIZE = 5 * 1024

#: Workload C: five commands in a row per host, each its own exec over one connection.
FIVE_COMMANDS = ("hostname", "id -un", "uname -r", "cat /proc/loadavg", "date +%s")

WORKLOADS = {
    "A": "check preflight: whoami, sudo -n true, python3 --version, /etc/os-release",
    "B": f"read a root-only {SECRET_SIZE // 1024} KB file with sudo",
    "C": "five commands in a row over one connection",
}
