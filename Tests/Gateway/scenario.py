"""What every gateway scenario script shares: its command line, the clients it builds, and
how it reports.

A scenario script is run by the venv's Python (deploy/setup-debian.sh installs pywinrm
0.5.0 and pypsrp 0.9.1 there) as

    python Tests/Gateway/<client>_scenarios.py SCENARIO --url http://127.0.0.1:PORT/wsman --user USER
                                               [--ca-file PEM   (for an https:// URL)]

with the password in the environment variable AIRLOCK_WSMAN_PASSWORD (so it is not on a
command line). It prints one JSON object on standard output (what it observed: outputs,
exit codes, exception types and fault codes) and exits 0; the Swift tests in
Tests/AirlockIntegrationTests/Gateway assert on it. Anything unexpected (an exception the
scenario did not ask for, a hang) ends it with a traceback on standard error and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import os
import sys
import typing as t
import urllib.parse

# The resource URIs airlockd registers in the gateway tests.
ECHO_URI = "http://schemas.airlock.dev/plugins/echo"
HOSTILE_URI = "http://schemas.airlock.dev/test/hostile"

# WSMan fault codes (winrm-plugin-api.md, wsman-shell-protocol.md section 5).
OPERATION_TIMED_OUT = 2150858793  # 0x80338029: a Receive with nothing to report
INVALID_SELECTORS = 2150858843  # 0x8033805B: unknown shell or command


class Arguments(t.NamedTuple):
    scenario: str
    url: str
    host: str
    port: int
    path: str
    user: str
    password: str
    # For an https:// URL: the CA certificate (PEM) the client verifies the gateway with.
    ca_file: str | None

    @property
    def is_https(self) -> bool:
        return self.url.startswith("https://")


Scenario = t.Callable[[Arguments], dict[str, t.Any]]

# The scenarios of the script being run, by name (filled by @scenario).
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> t.Callable[[Scenario], Scenario]:
    """Registers the decorated function as the scenario `name`."""

    def register(function: Scenario) -> Scenario:
        SCENARIOS[name] = function
        return function

    return register


def main() -> None:
    """Runs the scenario the command line names and reports what it observed."""
    arguments = parse_arguments(SCENARIOS)
    report(SCENARIOS[arguments.scenario](arguments))


def parse_arguments(scenarios: t.Iterable[str]) -> Arguments:
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(scenarios))
    parser.add_argument("--url", required=True, help="the gateway's URL, http://HOST:PORT/wsman")
    parser.add_argument("--user", required=True)
    parser.add_argument("--ca-file", help="for an https:// URL: the CA certificate (PEM) to verify the gateway with")
    parser.add_argument("--timeout", type=int, default=150, help="seconds before the script dumps its threads and exits")
    options = parser.parse_args()
    password = os.environ.get("AIRLOCK_WSMAN_PASSWORD")
    if password is None:
        parser.error("AIRLOCK_WSMAN_PASSWORD (the user's password) is not set")
    # A gateway that never answers must not hang the test run: dump every thread's stack
    # (which call was waiting) and exit.
    faulthandler.dump_traceback_later(options.timeout, exit=True)
    parts = urllib.parse.urlsplit(options.url)
    if parts.hostname is None or parts.port is None:
        parser.error(f"--url {options.url!r} has no host or port")
    if parts.scheme == "https" and options.ca_file is None:
        parser.error("an https:// URL needs --ca-file")
    return Arguments(options.scenario, options.url, parts.hostname, parts.port, parts.path.lstrip("/"), options.user, password, options.ca_file)


def report(result: dict[str, t.Any]) -> None:
    """Prints the scenario's observations as one JSON object and exits 0."""
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()
    sys.exit(0)


def text(data: bytes | str) -> str:
    """Output as text for the report (bytes that are not UTF-8 shown as \\xNN)."""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="backslashreplace")


def hexadecimal(data: bytes) -> str:
    return data.hex()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def counting_lines(count: int) -> bytes:
    """What `seq 1 COUNT` prints."""
    return b"".join(b"%d\n" % n for n in range(1, count + 1))


def large_output_summary(received: bytes, count: int) -> dict[str, t.Any]:
    """Length and checksum of `seq 1 COUNT`'s output as received, and as expected."""
    expected = counting_lines(count)
    first_difference = next((i for i, (a, b) in enumerate(zip(received, expected)) if a != b), None)
    return {
        "length": len(received),
        "expected_length": len(expected),
        "sha256": digest(received),
        "expected_sha256": digest(expected),
        "first_difference": first_difference,
    }
