"""pywinrm 0.5.0 against airlock-wsman: one scenario per run (see scenario.py for the
command line and the report).

Only the public API a pywinrm user calls: `winrm.Session(url, auth=(user, password),
transport='basic').run_cmd(...)` and, for the steps run_cmd does not expose, the
`winrm.protocol.Protocol` methods it is built from (open_shell, run_command,
send_command_input, get_command_output, cleanup_command, close_shell). pywinrm's
Protocol always talks to the cmd shell's resource URI.
"""

from __future__ import annotations

import typing as t
import uuid

import winrm
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError
from winrm.protocol import Protocol

from scenario import INVALID_SELECTORS, Arguments, hexadecimal, large_output_summary, main, scenario, text

def session(args: Arguments, password: str | None = None, user: str | None = None, **options: t.Any) -> winrm.Session:
    if args.is_https:
        options.update(ca_trust_path=args.ca_file, server_cert_validation="validate")
    credentials = (args.user if user is None else user, args.password if password is None else password)
    return winrm.Session(args.url, auth=credentials, transport="basic", proxy=None, **options)


def response_summary(response: winrm.Response) -> dict[str, t.Any]:
    return {"stdout": text(response.std_out), "stderr": text(response.std_err), "exit_code": response.status_code}


def fault_summary(error: WSManFaultError) -> dict[str, t.Any]:
    return {
        "exception": type(error).__name__,
        "http_status": error.code,
        "wsman_fault_code": error.wsman_fault_code,
        "fault_code": error.fault_code,
        "fault_subcode": error.fault_subcode,
        "reason": error.reason,
    }


@scenario("streams")
def streams(args: Arguments) -> dict[str, t.Any]:
    """stdout, stderr and an exit code apart; arguments joined into one command line."""
    s = session(args)
    mixed = s.run_cmd("sh", ["-c", "'echo out; echo err >&2; exit 3'"])
    hello = s.run_cmd("echo", ["hello", "world"])
    return {"mixed": response_summary(mixed), "hello": response_summary(hello)}


@scenario("echo")
def echo(args: Arguments) -> dict[str, t.Any]:
    """One plain run_cmd (after other scenarios: the gateway still works; over HTTPS)."""
    return response_summary(session(args).run_cmd("echo", ["still", "working"]))


@scenario("stdin-pieces")
def stdin_pieces(args: Arguments) -> dict[str, t.Any]:
    """cat gets its standard input in three Sends, the last with End."""
    p = session(args).protocol
    shell = p.open_shell()
    command = p.run_command(shell, "cat")
    pieces = [b"first piece\n", b"second piece\n", b"third piece, the last\n"]
    for index, piece in enumerate(pieces):
        p.send_command_input(shell, command, piece, end=index == len(pieces) - 1)
    stdout, stderr, exit_code = p.get_command_output(shell, command)
    p.cleanup_command(shell, command)
    p.close_shell(shell)
    return {"stdout": text(stdout), "stderr": text(stderr), "exit_code": exit_code, "expected": text(b"".join(pieces))}


@scenario("two-commands")
def two_commands(args: Arguments) -> dict[str, t.Any]:
    """Two commands, one after the other, in one shell."""
    p = session(args).protocol
    shell = p.open_shell()
    results = []
    for command_line, arguments in [("echo", ["first"]), ("sh", ["-c", "'echo second; exit 5'"])]:
        command = p.run_command(shell, command_line, arguments)
        stdout, stderr, exit_code = p.get_command_output(shell, command)
        p.cleanup_command(shell, command)
        results.append({"stdout": text(stdout), "stderr": text(stderr), "exit_code": exit_code})
    p.close_shell(shell)
    return {"commands": results}


@scenario("long-command")
def long_command(args: Arguments) -> dict[str, t.Any]:
    """A command that outlasts OperationTimeout (2 s): the Receives that time out come back
    as the timeout fault, which pywinrm retries, until the output and Done arrive."""
    s = session(args, operation_timeout_sec=2, read_timeout_sec=10)
    p = s.protocol
    timeouts = 0
    receive = p.get_command_output_raw

    def counting_receive(shell_id: str, command_id: str):
        nonlocal timeouts
        try:
            return receive(shell_id, command_id)
        except WinRMOperationTimeoutError:
            timeouts += 1
            raise

    p.get_command_output_raw = counting_receive  # type: ignore[method-assign]
    result = response_summary(s.run_cmd("sh", ["-c", "'sleep 7; echo finished'"]))
    result["operation_timeouts"] = timeouts
    return result


@scenario("large-output")
def large_output(args: Arguments) -> dict[str, t.Any]:
    """`seq 1 55000` (318,894 bytes) arrives whole and in order; no answer is larger than
    the MaxEnvelopeSize pywinrm asks for (153600)."""
    s = session(args)
    largest = 0
    receives = 0
    send_message = s.protocol.transport.send_message

    def measuring_send(message: str | bytes) -> bytes:
        nonlocal largest, receives
        answer = send_message(message)
        largest = max(largest, len(answer))
        if b"/Receive<" in (message if isinstance(message, bytes) else message.encode()):
            receives += 1
        return answer

    s.protocol.transport.send_message = measuring_send  # type: ignore[method-assign]
    response = s.run_cmd("seq", ["1", "55000"])
    result = large_output_summary(response.std_out, 55000)
    result.update(
        exit_code=response.status_code,
        stderr=text(response.std_err),
        largest_answer_bytes=largest,
        max_envelope_size=s.protocol.max_env_sz,
        receives=receives,
    )
    return result


@scenario("non-ascii")
def non_ascii(args: Arguments) -> dict[str, t.Any]:
    """Bytes that are not ASCII (and not UTF-8, and NUL) pass unchanged both ways; a
    UTF-8 command line reaches the shell as written."""
    s = session(args)
    printed = s.run_cmd("printf", ["'\\303\\251\\377\\000\\001'"])
    word = "h\u00e9llo w\u00f6rld \u20ac \U0001F600"
    echoed = s.run_cmd("echo", [word])
    p = s.protocol
    shell = p.open_shell()
    command = p.run_command(shell, "cat")
    stdin_bytes = b"\x00\xff\xfe\xc3\xa9\r\n\x80"
    p.send_command_input(shell, command, stdin_bytes, end=True)
    stdout, _, cat_exit = p.get_command_output(shell, command)
    p.cleanup_command(shell, command)
    p.close_shell(shell)
    return {
        "printf_hex": hexadecimal(printed.std_out),
        "printf_exit_code": printed.status_code,
        "echo_hex": hexadecimal(echoed.std_out),
        "echo_expected_hex": hexadecimal((word + "\n").encode("utf-8")),
        "cat_hex": hexadecimal(stdout),
        "cat_expected_hex": hexadecimal(stdin_bytes),
        "cat_exit_code": cat_exit,
    }


@scenario("environment")
def environment(args: Arguments) -> dict[str, t.Any]:
    """The shell's environment variables and working directory reach its commands."""
    p = session(args).protocol
    shell = p.open_shell(working_directory="/tmp", env_vars={"AIRLOCK_GREETING": "hello from pywinrm", "AIRLOCK_SECOND": "a b  c"})
    command = p.run_command(shell, 'echo "$AIRLOCK_GREETING"; echo "$AIRLOCK_SECOND"; pwd')
    stdout, stderr, exit_code = p.get_command_output(shell, command)
    p.cleanup_command(shell, command)
    p.close_shell(shell)
    return {"stdout": text(stdout), "stderr": text(stderr), "exit_code": exit_code}


@scenario("unknown-shell")
def unknown_shell(args: Arguments) -> dict[str, t.Any]:
    """A Command for a shell id the gateway never gave out, and a Receive for a command id
    it never gave out, are WS-Man InvalidSelectors faults."""
    p = session(args).protocol
    result: dict[str, t.Any] = {}
    try:
        p.run_command(str(uuid.uuid4()).upper(), "echo", ["never"])
        result["shell"] = {"exception": None}
    except WSManFaultError as error:
        result["shell"] = fault_summary(error)
    shell = p.open_shell()
    try:
        p.get_command_output_raw(shell, str(uuid.uuid4()).upper())
        result["command"] = {"exception": None}
    except WSManFaultError as error:
        result["command"] = fault_summary(error)
    p.close_shell(shell)
    result["expected_wsman_fault_code"] = INVALID_SELECTORS
    return result


@scenario("wrong-password")
def wrong_password(args: Arguments) -> dict[str, t.Any]:
    """A wrong password, and a user the gateway does not know, are refused (HTTP 401)."""
    result: dict[str, t.Any] = {}
    for name, user, password in [("wrong_password", args.user, args.password + "-wrong"), ("unknown_user", "nobody-" + args.user, args.password)]:
        try:
            session(args, password=password, user=user).run_cmd("echo", ["must", "not", "run"])
            result[name] = {"exception": None}
        except InvalidCredentialsError as error:
            result[name] = {"exception": type(error).__name__, "message": str(error)}
    return result


@scenario("terminate-running")
def terminate_running(args: Arguments) -> dict[str, t.Any]:
    """cleanup_command (Signal terminate) on a command still running, then Delete, and the
    next command in a new shell works."""
    p = session(args).protocol
    shell = p.open_shell()
    command = p.run_command(shell, "sleep", ["60"])
    p.cleanup_command(shell, command)
    p.close_shell(shell)
    after = session(args).run_cmd("echo", ["after", "terminate"])
    return {"after": response_summary(after)}


if __name__ == "__main__":
    main()
