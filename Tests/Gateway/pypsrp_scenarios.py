"""pypsrp 0.9.1 against airlock-wsman: one scenario per run (see scenario.py for the
command line and the report).

Only the public API a pypsrp user calls: `pypsrp.client.Client(host, port=PORT,
ssl=False, auth='basic', encryption='never', ...)`.execute_cmd, and `pypsrp.shell.WinRS`
and `Process` on a `pypsrp.wsman.WSMan` for stdin in pieces, signals, environment,
working directory and resource URIs other than the cmd shell's.
"""

from __future__ import annotations

import threading
import typing as t
import uuid

from pypsrp.client import Client
from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.shell import CommandState, Process, SignalCode, WinRS
from pypsrp.wsman import SelectorSet, WSMan

from scenario import (
    ECHO_URI,
    HOSTILE_URI,
    INVALID_SELECTORS,
    OPERATION_TIMED_OUT,
    Arguments,
    hexadecimal,
    large_output_summary,
    main,
    scenario,
    text,
)

def connection_options(args: Arguments, password: str | None = None, user: str | None = None) -> dict[str, t.Any]:
    return {
        "port": args.port,
        "ssl": args.is_https,
        # A CA file path (pypsrp's cert_validation takes one) for https, unused for http.
        "cert_validation": args.ca_file if args.is_https else True,
        "auth": "basic",
        "encryption": "never",
        "username": args.user if user is None else user,
        "password": args.password if password is None else password,
        "path": args.path,
        "no_proxy": True,
    }


def wsman(args: Arguments, **options: t.Any) -> WSMan:
    return WSMan(args.host, **connection_options(args), **options)


def client(args: Arguments, password: str | None = None, user: str | None = None) -> Client:
    return Client(args.host, **connection_options(args, password, user))


def process_summary(process: Process) -> dict[str, t.Any]:
    return {"stdout": text(process.stdout), "stderr": text(process.stderr), "exit_code": process.rc, "done": process.state == CommandState.DONE}


def fault_summary(error: WSManFaultError) -> dict[str, t.Any]:
    return {"exception": type(error).__name__, "wsman_fault_code": error.code, "machine": error.machine, "reason": error.reason}


def poll_until(process: Process, needle: bytes) -> None:
    """Receives until `needle` is in the process's stdout (or it is done)."""
    while needle not in process.stdout and process.state != CommandState.DONE:
        process.poll_invoke()


@scenario("streams")
def streams(args: Arguments) -> dict[str, t.Any]:
    """stdout, stderr and an exit code apart (execute_cmd); arguments, each its own
    rsp:Arguments, joined into one command line (Process)."""
    stdout, stderr, exit_code = client(args).execute_cmd("echo out; echo err >&2; exit 3")
    with WinRS(wsman(args)) as shell:
        hello = Process(shell, "echo", ["hello", "world"])
        hello.invoke()
    return {"mixed": {"stdout": stdout, "stderr": stderr, "exit_code": exit_code}, "hello": process_summary(hello)}


@scenario("echo")
def echo(args: Arguments) -> dict[str, t.Any]:
    """One plain execute_cmd (after other scenarios: the gateway still works; over HTTPS)."""
    stdout, stderr, exit_code = client(args).execute_cmd("echo still working")
    return {"stdout": stdout, "stderr": stderr, "exit_code": exit_code}


@scenario("stdin-pieces")
def stdin_pieces(args: Arguments) -> dict[str, t.Any]:
    """Standard input in pieces, each answered before the next is sent: the command reads
    a line, prints it, reads the next; the last piece ends the stream."""
    with WinRS(wsman(args)) as shell:
        process = Process(shell, "while read line; do echo got:$line; done; echo eof")
        process.begin_invoke()
        seen_between: list[str] = []
        for piece in [b"one", b"two", b"three"]:
            process.send(piece + b"\n", end=False)
            poll_until(process, b"got:" + piece + b"\n")
            seen_between.append(text(process.stdout))
        process.send(b"", end=True)
        process.end_invoke()
        # The same through cat, with a larger piece in the middle.
        cat = Process(shell, "cat")
        cat.begin_invoke()
        pieces = [b"first\n", b"x" * 100_000 + b"\n", b"last\n"]
        for index, piece in enumerate(pieces):
            cat.send(piece, end=index == len(pieces) - 1)
        cat.end_invoke()
    return {
        "lines": process_summary(process),
        "seen_between": seen_between,
        "cat_length": len(cat.stdout),
        "cat_intact": cat.stdout == b"".join(pieces),
        "cat_exit_code": cat.rc,
    }


@scenario("two-commands")
def two_commands(args: Arguments) -> dict[str, t.Any]:
    """Two commands in one shell at the same time (the first waits for input while the
    second runs to its end), then a third after them."""
    with WinRS(wsman(args)) as shell:
        first = Process(shell, "cat")
        first.begin_invoke()
        second = Process(shell, "echo second")
        second.invoke()
        first_state_then = first.state
        first.send(b"first\n", end=True)
        first.end_invoke()
        third = Process(shell, "exit 5")
        third.invoke()
    return {
        "first": process_summary(first),
        "second": process_summary(second),
        "third": process_summary(third),
        "first_done_while_second_ran": first_state_then == CommandState.DONE,
    }


@scenario("long-command")
def long_command(args: Arguments) -> dict[str, t.Any]:
    """A command that outlasts OperationTimeout (2 s): Process.poll_invoke swallows the
    timeout faults until the output and Done arrive."""
    with WinRS(wsman(args, operation_timeout=2, read_timeout=10)) as shell:
        timeouts = 0
        receive = shell.receive

        def counting_receive(*arguments: t.Any, **options: t.Any):
            nonlocal timeouts
            try:
                return receive(*arguments, **options)
            except WSManFaultError as error:
                if error.code == OPERATION_TIMED_OUT:
                    timeouts += 1
                raise

        shell.receive = counting_receive  # type: ignore[method-assign]
        process = Process(shell, "sleep 7; echo finished")
        process.invoke()
    result = process_summary(process)
    result["operation_timeouts"] = timeouts
    return result


@scenario("large-output")
def large_output(args: Arguments) -> dict[str, t.Any]:
    """`seq 1 55000` (318,894 bytes) arrives whole and in order."""
    with WinRS(wsman(args)) as shell:
        process = Process(shell, "seq 1 55000")
        process.invoke()
    result = large_output_summary(process.stdout, 55000)
    result.update(exit_code=process.rc, stderr=text(process.stderr))
    return result


@scenario("non-ascii")
def non_ascii(args: Arguments) -> dict[str, t.Any]:
    """Bytes that are not ASCII (and not UTF-8, and NUL) pass unchanged both ways; a UTF-8
    command line reaches the shell as written."""
    word = "h\u00e9llo w\u00f6rld \u20ac \U0001F600"
    stdin_bytes = b"\x00\xff\xfe\xc3\xa9\r\n\x80"
    with WinRS(wsman(args)) as shell:
        printed = Process(shell, "printf '\\303\\251\\377\\000\\001'")
        printed.invoke()
        echoed = Process(shell, "echo", [word])
        echoed.invoke()
        cat = Process(shell, "cat")
        cat.begin_invoke()
        cat.send(stdin_bytes, end=True)
        cat.end_invoke()
    decoded, _, _ = client(args).execute_cmd("echo " + word, encoding="utf-8")
    return {
        "printf_hex": hexadecimal(printed.stdout),
        "printf_exit_code": printed.rc,
        "echo_hex": hexadecimal(echoed.stdout),
        "echo_expected_hex": hexadecimal((word + "\n").encode("utf-8")),
        "cat_hex": hexadecimal(cat.stdout),
        "cat_expected_hex": hexadecimal(stdin_bytes),
        "cat_exit_code": cat.rc,
        "execute_cmd_utf8": decoded,
        "execute_cmd_expected": word + "\n",
    }


@scenario("environment")
def environment(args: Arguments) -> dict[str, t.Any]:
    """The shell's environment variables and working directory reach its commands."""
    variables = {"AIRLOCK_GREETING": "hello from pypsrp", "AIRLOCK_SECOND": "a b  c"}
    with WinRS(wsman(args), environment=variables, working_directory="/tmp") as shell:
        process = Process(shell, 'echo "$AIRLOCK_GREETING"; echo "$AIRLOCK_SECOND"; pwd')
        process.invoke()
    stdout, _, exit_code = client(args).execute_cmd('echo "$AIRLOCK_THIRD"', environment={"AIRLOCK_THIRD": "from execute_cmd"})
    return {"shell": process_summary(process), "execute_cmd": {"stdout": stdout, "exit_code": exit_code}}


@scenario("ctrl-c")
def ctrl_c(args: Arguments) -> dict[str, t.Any]:
    """ctrl_c ends a running command: sh and sleep die of SIGINT, exit code 128 + 2."""
    with WinRS(wsman(args)) as shell:
        process = Process(shell, "echo ready; sleep 60; echo not-interrupted")
        process.begin_invoke()
        poll_until(process, b"ready\n")
        running_before_signal = process.state != CommandState.DONE
        process.signal(SignalCode.CTRL_C)
        process.end_invoke()
    result = process_summary(process)
    result["running_before_signal"] = running_before_signal
    return result


@scenario("unknown-shell")
def unknown_shell(args: Arguments) -> dict[str, t.Any]:
    """A Command for a shell id the gateway never gave out, and a Receive for a command id
    it never gave out, are WS-Man InvalidSelectors faults."""
    result: dict[str, t.Any] = {"expected_wsman_fault_code": INVALID_SELECTORS}
    connection = wsman(args)
    made_up = WinRS(connection)
    selectors = SelectorSet()
    selectors.add_option("ShellId", str(uuid.uuid4()).upper())
    made_up._selector_set = selectors
    made_up.opened = True
    try:
        Process(made_up, "echo never").begin_invoke()
        result["shell"] = {"exception": None}
    except WSManFaultError as error:
        result["shell"] = fault_summary(error)
    with WinRS(connection) as shell:
        try:
            shell.receive("stdout stderr", str(uuid.uuid4()).upper())
            result["command"] = {"exception": None}
        except WSManFaultError as error:
            result["command"] = fault_summary(error)
    return result


@scenario("wrong-password")
def wrong_password(args: Arguments) -> dict[str, t.Any]:
    """A wrong password, and a user the gateway does not know, are refused (HTTP 401)."""
    result: dict[str, t.Any] = {}
    for name, user, password in [("wrong_password", args.user, args.password + "-wrong"), ("unknown_user", "nobody-" + args.user, args.password)]:
        try:
            client(args, password=password, user=user).execute_cmd("echo must not run")
            result[name] = {"exception": None}
        except AuthenticationError as error:
            result[name] = {"exception": type(error).__name__, "message": str(error)}
    return result


@scenario("plugin-crash")
def plugin_crash(args: Arguments) -> dict[str, t.Any]:
    """The hostile test plug-in crashes (SIGSEGV) in its Command entry point, and in
    another shell while a Receive waits for a running command: both reach the client as
    WS-Man faults; the cmd shell keeps working."""
    result: dict[str, t.Any] = {}
    for name, command_line in [("in_command", "segv"), ("during_receive", "segv-later 3000")]:
        shell = WinRS(wsman(args), resource_uri=HOSTILE_URI)
        shell.open()
        process = Process(shell, command_line)
        phase = "command"
        try:
            process.begin_invoke()
            phase = "receive"
            process.end_invoke()
            result[name] = {"exception": None, "output": process_summary(process)}
        except WSManFaultError as error:
            result[name] = fault_summary(error)
            result[name]["phase"] = phase
        try:
            shell.close()
            result[name]["close"] = "ok"
        except WSManFaultError as error:
            # The shell died with the worker; the gateway may say so.
            result[name]["close"] = f"fault {error.code}"
    stdout, _, exit_code = client(args).execute_cmd("echo still working")
    result["after"] = {"stdout": stdout, "exit_code": exit_code}
    return result


@scenario("whoami")
def whoami(args: Arguments) -> dict[str, t.Any]:
    """The echo plug-in's `whoami` prints the WSMAN_SENDER_DETAILS it was given."""
    with WinRS(wsman(args), resource_uri=ECHO_URI) as shell:
        process = Process(shell, "whoami")
        process.invoke()
    return process_summary(process)


@scenario("concurrent")
def concurrent(args: Arguments) -> dict[str, t.Any]:
    """A Receive held by one client (cat waiting for input, OperationTimeout 20 s) while
    8 pywinrm clients and 4 pypsrp clients each run a command at once: they all finish
    while the Receive is still held; then input ends the held command."""
    import winrm  # both clients in one scenario

    held_shell = WinRS(wsman(args, operation_timeout=20, read_timeout=30))
    held_shell.open()
    held = Process(held_shell, "cat")
    held.begin_invoke()
    held_errors: list[str] = []

    def hold() -> None:
        try:
            held.end_invoke()
        except Exception as error:
            held_errors.append(f"{type(error).__name__}: {error}")

    holder = threading.Thread(target=hold)
    holder.start()

    results: list[t.Any] = [None] * 12

    def run(index: int) -> None:
        try:
            if index < 8:
                response = winrm.Session(args.url, auth=(args.user, args.password), transport="basic", proxy=None).run_cmd("echo", ["client", str(index)])
                results[index] = {"stdout": text(response.std_out), "stderr": text(response.std_err), "exit_code": response.status_code}
            else:
                stdout, stderr, exit_code = client(args).execute_cmd(f"echo client {index}")
                results[index] = {"stdout": stdout, "stderr": stderr, "exit_code": exit_code}
        except Exception as error:  # reported, and the test fails on it
            results[index] = {"exception": type(error).__name__, "message": str(error)}

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held_done_before_release = held.state == CommandState.DONE or not holder.is_alive()
    # Release the held command through a connection of its own (the holder's is busy).
    releaser = WinRS(wsman(args))
    releaser._selector_set = held_shell._selector_set
    releaser.opened = True
    releaser.send("stdin", b"release\n", command_id=held.id, end=True)
    holder.join()
    held_shell.close()
    return {
        "clients": results,
        "held_done_before_release": held_done_before_release,
        "held": process_summary(held),
        "held_errors": held_errors,
    }


if __name__ == "__main__":
    main()
