#!/usr/bin/env python3
"""A WinRM client small enough for python3-minimal, run inside the nspawn container by
Tests/systemd/nspawn-test.sh against airlock-wsman.service.

python3-minimal has no http.client, xml or json, so this speaks HTTP/1.1 over a socket
itself and parses the answers with pyexpat (built in). The envelopes are pywinrm's
(/work/shared/wsman-shell-protocol.md).

    wsman-probe.py status PORT [USER PASSWORD]
        one Create; prints "HTTP <status>" and the WWW-Authenticate header, if any.
        Without USER, no Authorization header is sent. Exit status 0 when an answer came.
    wsman-probe.py run PORT USER PASSWORD COMMAND [ARGUMENT...]
        Create, Command, Receive until Done, Delete on one keep-alive connection, as
        pywinrm's run_cmd does; prints one line per step and, last,
        "stdout=<base64> stderr=<base64> exit=<code>". Exit status 0 when every step
        answered 200 as expected, 1 otherwise (the failing step's answer is printed).
"""
import base64
import os
import pyexpat
import socket
import sys
import time

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_MS_WSMAN = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"
NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
RESOURCE_CMD = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
STATE_DONE = NS_SHELL + "/CommandState/Done"
FAULT_TIMED_OUT = "2150858793"


def message_id():
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return "uuid:%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def envelope(action, body, shell_id=None, options="", port=5985, timeout="PT5S"):
    selectors = ""
    if shell_id is not None:
        selectors = '<w:SelectorSet><w:Selector Name="ShellId">%s</w:Selector></w:SelectorSet>' % shell_id
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<env:Envelope xmlns:env="%s" xmlns:a="%s" xmlns:x="%s" xmlns:w="%s" xmlns:p="%s" xmlns:rsp="%s">'
        "<env:Header><a:To>http://windows-host:%d/wsman</a:To>"
        '<a:ReplyTo><a:Address mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>'
        '<w:MaxEnvelopeSize mustUnderstand="true">153600</w:MaxEnvelopeSize><a:MessageID>%s</a:MessageID>'
        '<w:Locale mustUnderstand="false" xml:lang="en-US"/><p:DataLocale mustUnderstand="false" xml:lang="en-US"/>'
        "<w:OperationTimeout>%s</w:OperationTimeout>"
        '<w:ResourceURI mustUnderstand="true">%s</w:ResourceURI>'
        '<a:Action mustUnderstand="true">%s</a:Action>%s%s</env:Header>'
        "<env:Body>%s</env:Body></env:Envelope>"
    ) % (NS_SOAP, NS_ADDRESSING, NS_TRANSFER, NS_WSMAN, NS_MS_WSMAN, NS_SHELL, port, message_id(),
         timeout, RESOURCE_CMD, action, selectors, options, body)


def xml_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.elements = []  # (namespace, local name, attributes, text), in document order
        if body:
            self._parse()

    def _parse(self):
        stack = []
        parser = pyexpat.ParserCreate(namespace_separator=" ")

        def start(name, attributes):
            namespace, _, local = name.rpartition(" ")
            element = [namespace, local, attributes, ""]
            self.elements.append(element)
            stack.append(element)

        def end(name):
            stack.pop()

        def text(data):
            if stack:
                stack[-1][3] += data

        parser.StartElementHandler = start
        parser.EndElementHandler = end
        parser.CharacterDataHandler = text
        parser.Parse(self.body, True)

    def find(self, namespace, local):
        return [e for e in self.elements if e[0] == namespace and e[1] == local]

    def fault_code(self):
        faults = self.find(NS_FAULT, "WSManFault")
        return faults[0][2].get("Code") if faults else None

    def describe(self):
        return "HTTP %d: %s" % (self.status, self.body.decode("utf-8", "replace")[:1500])


class Connection:
    def __init__(self, port, user=None, password=None):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.authorization = None
        if user is not None:
            token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
            self.authorization = "Basic " + token
        self.pending = b""

    def post(self, body):
        data = body.encode("utf-8")
        head = (
            "POST /wsman HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: airlock-nspawn-test\r\n"
            "Connection: keep-alive\r\nContent-Type: application/soap+xml;charset=UTF-8\r\n"
            "Content-Length: %d\r\n" % (self.port, len(data))
        )
        if self.authorization:
            head += "Authorization: %s\r\n" % self.authorization
        self.sock.sendall((head + "\r\n").encode() + data)
        return self._read_answer()

    def _read_more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the gateway closed the connection after %d bytes: %r" % (len(self.pending), self.pending[:500]))
        self.pending += chunk

    def _read_answer(self):
        while b"\r\n\r\n" not in self.pending:
            self._read_more()
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise ValueError("chunked answers are not handled by this probe: %r" % headers)
        length = int(headers.get("content-length", "0"))
        while len(self.pending) < length:
            self._read_more()
        body, self.pending = self.pending[:length], self.pending[length:]
        return Answer(status, headers, body)

    def close(self):
        self.sock.close()


def create_body():
    return "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"


CREATE_OPTIONS = '<w:OptionSet><w:Option Name="WINRS_NOPROFILE">FALSE</w:Option><w:Option Name="WINRS_CODEPAGE">437</w:Option></w:OptionSet>'
COMMAND_OPTIONS = '<w:OptionSet><w:Option Name="WINRS_CONSOLEMODE_STDIN">TRUE</w:Option><w:Option Name="WINRS_SKIP_CMD_SHELL">FALSE</w:Option></w:OptionSet>'


def status(port, user=None, password=None):
    connection = Connection(port, user, password)
    try:
        answer = connection.post(envelope(NS_TRANSFER + "/Create", create_body(), options=CREATE_OPTIONS, port=port))
    finally:
        connection.close()
    print("HTTP %d" % answer.status)
    if "www-authenticate" in answer.headers:
        print("WWW-Authenticate: %s" % answer.headers["www-authenticate"])
    return 0


def fail(step, answer):
    print("FAIL %s: %s" % (step, answer.describe()))
    return 1


def run(port, user, password, command, arguments):
    connection = Connection(port, user, password)
    try:
        # Create
        answer = connection.post(envelope(NS_TRANSFER + "/Create", create_body(), options=CREATE_OPTIONS, port=port))
        selectors = [e for e in answer.find(NS_WSMAN, "Selector") if e[2].get("Name") == "ShellId"]
        if answer.status != 200 or not selectors or not selectors[0][3]:
            return fail("create", answer)
        shell_id = selectors[0][3]
        print("create: HTTP 200 ShellId=%s" % shell_id)

        # Command
        body = "<rsp:CommandLine><rsp:Command>%s</rsp:Command>%s</rsp:CommandLine>" % (
            xml_escape(command), "".join("<rsp:Arguments>%s</rsp:Arguments>" % xml_escape(a) for a in arguments))
        answer = connection.post(envelope(NS_SHELL + "/Command", body, shell_id, COMMAND_OPTIONS, port))
        ids = answer.find(NS_SHELL, "CommandId")
        if answer.status != 200 or not ids or not ids[0][3]:
            return fail("command", answer)
        command_id = ids[0][3]
        print("command: HTTP 200 CommandId=%s" % command_id)

        # Receive until Done
        streams = {"stdout": b"", "stderr": b""}
        exit_code = None
        receives = 0
        deadline = time.monotonic() + 30
        body = '<rsp:Receive><rsp:DesiredStream CommandId="%s">stdout stderr</rsp:DesiredStream></rsp:Receive>' % command_id
        while exit_code is None:
            if time.monotonic() > deadline:
                print("FAIL receive: no Done within 30 s after %d receives" % receives)
                return 1
            answer = connection.post(envelope(NS_SHELL + "/Receive", body, shell_id, port=port))
            receives += 1
            if answer.status == 500 and answer.fault_code() == FAULT_TIMED_OUT:
                continue  # nothing within OperationTimeout: retry, as both clients do
            if answer.status != 200:
                return fail("receive", answer)
            for stream in answer.find(NS_SHELL, "Stream"):
                name = stream[2].get("Name")
                if name in streams and stream[3].strip():
                    streams[name] += base64.b64decode(stream[3].strip())
            for state in answer.find(NS_SHELL, "CommandState"):
                if state[2].get("State") == STATE_DONE:
                    codes = answer.find(NS_SHELL, "ExitCode")
                    if not codes:
                        return fail("receive (Done without ExitCode)", answer)
                    exit_code = int(codes[0][3].strip())
        print("receive: HTTP 200 Done after %d receive(s)" % receives)

        # Delete
        answer = connection.post(envelope(NS_TRANSFER + "/Delete", "", shell_id, port=port))
        if answer.status != 200:
            return fail("delete", answer)
        print("delete: HTTP 200")
        print("stdout=%s stderr=%s exit=%d" % (
            base64.b64encode(streams["stdout"]).decode(), base64.b64encode(streams["stderr"]).decode(), exit_code))
        return 0
    finally:
        connection.close()


def main(argv):
    if len(argv) >= 3 and argv[1] == "status" and len(argv) in (3, 5):
        return status(int(argv[2]), *argv[3:5])
    if len(argv) >= 6 and argv[1] == "run":
        return run(int(argv[2]), argv[3], argv[4], argv[5], argv[6:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, EOFError, ValueError, pyexpat.ExpatError) as error:
        print("FAIL %s: %s" % (type(error).__name__, error))
        sys.exit(1)
