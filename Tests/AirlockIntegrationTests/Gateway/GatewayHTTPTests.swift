import AirlockPosix
import Foundation
import Glibc
import Testing

/// airlock-wsman's HTTP layer, spoken by hand over a TCP socket (no Python): what a client
/// that is not pywinrm or pypsrp meets.
@Suite("WS-Man gateway: HTTP by hand (issue 8)", .gatewayEnvironmentWithoutPython)
struct GatewayHTTPTests {
    @Test("a POST without Authorization is 401 with an empty body and a Basic challenge")
    func missingAuthorization() async throws {
        let gateway = try GatewayEnvironment.require().gateway
        let response = try await RawHTTP.exchange(port: gateway.port, RawHTTP.post(WSManEnvelope.createShell(), authorization: nil))
        #expect(response.status == 401, "\(response)")
        #expect(response.header("WWW-Authenticate") == #"Basic realm="airlock-wsman""#, "\(response)")
        #expect(response.body.isEmpty, "\(response)")
    }

    @Test("a wrong password is 401")
    func wrongPassword() async throws {
        let gateway = try GatewayEnvironment.require().gateway
        let wrong = GatewayProcess.User(name: "alice", password: GatewayProcess.User.alice.password + "x")
        let response = try await RawHTTP.exchange(port: gateway.port, RawHTTP.post(WSManEnvelope.createShell(), authorization: wrong))
        #expect(response.status == 401, "\(response)")
        #expect(response.body.isEmpty, "\(response)")
    }

    @Test("GET is refused with 405 or 404")
    func get() async throws {
        let gateway = try GatewayEnvironment.require().gateway
        let request = "GET /wsman HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: \(RawHTTP.basic(.alice))\r\nContent-Length: 0\r\n\r\n"
        let response = try await RawHTTP.exchange(port: gateway.port, Array(request.utf8))
        #expect(response.status == 405 || response.status == 404, "\(response)")
    }

    @Test("a body that is not XML is 400 with a SOAP fault")
    func garbageBody() async throws {
        let gateway = try GatewayEnvironment.require().gateway
        let response = try await RawHTTP.exchange(port: gateway.port, RawHTTP.post("this is <not> XML & never was <", authorization: .alice))
        #expect(response.status == 400, "\(response)")
        let body = response.bodyText
        #expect(body.contains("http://www.w3.org/2003/05/soap-envelope"), "a SOAP 1.2 envelope: \(response)")
        #expect(body.contains(":Fault") || body.contains("<Fault"), "a SOAP Fault: \(response)")
    }

    @Test("Create and Delete by hand: 200, the ShellId selector, RelatesTo echoes the MessageID exactly")
    func createAndDelete() async throws {
        let gateway = try GatewayEnvironment.require().gateway
        let createID = "uuid:" + UUID().uuidString.uppercased()
        let created = try await RawHTTP.exchange(port: gateway.port, RawHTTP.post(WSManEnvelope.createShell(messageID: createID), authorization: .alice))
        #expect(created.status == 200, "\(created)")
        #expect(created.bodyText.contains(createID), "RelatesTo \(createID), in the same case: \(created)")
        let shellID = try #require(WSManEnvelope.shellID(in: created.bodyText), "no Selector Name=\"ShellId\" in \(created)")

        let deleteID = "uuid:" + UUID().uuidString.lowercased()
        let deleted = try await RawHTTP.exchange(port: gateway.port, RawHTTP.post(WSManEnvelope.deleteShell(shellID, messageID: deleteID), authorization: .alice))
        #expect(deleted.status == 200, "\(deleted)")
        #expect(deleted.bodyText.contains(deleteID), "RelatesTo \(deleteID): \(deleted)")

        // The shell is gone: deleting it again is the InvalidSelectors fault (HTTP 500).
        let again = try await RawHTTP.exchange(port: gateway.port, RawHTTP.post(WSManEnvelope.deleteShell(shellID), authorization: .alice))
        #expect(again.status == 500, "\(again)")
        #expect(again.bodyText.contains("2150858843"), "WSManFault Code 2150858843: \(again)")
    }
}

/// airlock-wsman's life, with a gateway of the test's own.
@Suite("WS-Man gateway: start and stop (issue 8)")
struct GatewayLifeTests {
    @Test("SIGTERM: airlock-wsman stops listening and exits 0")
    func sigterm() async throws {
        try await Daemon.with(plugins: [:], config: GatewayEnvironment.daemonConfiguration) { daemon in
            let gateway = try await GatewayProcess.start(socketPath: daemon.socketPath, users: [.alice])
            let response: RawHTTPResponse
            do {
                response = try await RawHTTP.exchange(port: gateway.port, RawHTTP.post(WSManEnvelope.createShell(), authorization: nil))
            } catch {
                await gateway.stop()
                throw error
            }
            #expect(response.status == 401, "\(response)")
            let log = gateway.logTail
            let status = await gateway.stop()
            #expect(status == .exited(0), "airlock-wsman \(status) after SIGTERM; its log:\n\(log)")
            await #expect(throws: (any Error).self, "the port is closed after the stop") {
                _ = try await RawHTTP.exchange(port: gateway.port, RawHTTP.post(WSManEnvelope.createShell(), authorization: nil))
            }
        }
    }

    @Test("HTTPS with a configured certificate: the client verifies it and runs a command", arguments: WinRMClient.allCases)
    func https(client: WinRMClient) async throws {
        _ = try WinRMScript.pythonInterpreter()
        try await TestCertificate.with { certificate in
            try await Daemon.with(plugins: [:], config: GatewayEnvironment.daemonConfiguration) { daemon in
                try await GatewayProcess.with(socketPath: daemon.socketPath, users: [.alice], tls: certificate) { gateway in
                    let url = try #require(gateway.httpsURL)
                    #expect(url.hasPrefix("https://127.0.0.1:"), "\(url)")
                    let report = try await WinRMScript(client: client).run(
                        "echo", url: url, caFile: certificate.certificatePath, user: .alice, gateway: gateway, daemon: daemon)
                    #expect(report["stdout"]?.string == "still working\n", "\(report)")
                    #expect(report["exit_code"]?.int == 0, "\(report)")
                }
            }
        }
    }

    @Test("hash-password prints a yescrypt hash that differs for the same password")
    func hashPassword() async throws {
        let first = try await GatewayProcess.hash("same password")
        let second = try await GatewayProcess.hash("same password")
        #expect(first.hasPrefix("$y$"), "\(first)")
        #expect(first != second, "a fresh salt each time: \(first) \(second)")
    }
}

// MARK: - HTTP by hand

/// An HTTP response as read off the socket.
struct RawHTTPResponse: Sendable, CustomStringConvertible {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    /// The first header called `name` (any case).
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }

    var description: String {
        "HTTP \(status), headers \(headers.map { "\($0.name): \($0.value)" }), body \(body.count) bytes: \(bodyText.prefix(3000))"
    }
}

/// One HTTP/1.1 request and its response over a fresh TCP connection to 127.0.0.1.
enum RawHTTP {
    /// `Basic base64(user:password)`.
    static func basic(_ user: GatewayProcess.User) -> String {
        "Basic " + Data("\(user.name):\(user.password)".utf8).base64EncodedString()
    }

    /// A `POST /wsman` with a SOAP body, as pywinrm sends it.
    static func post(_ body: String, authorization: GatewayProcess.User?) -> [UInt8] {
        let bytes = Array(body.utf8)
        var head = "POST /wsman HTTP/1.1\r\nHost: 127.0.0.1:5985\r\nUser-Agent: airlock-tests\r\nConnection: keep-alive\r\n"
        head += "Content-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: \(bytes.count)\r\n"
        if let authorization { head += "Authorization: \(basic(authorization))\r\n" }
        return Array((head + "\r\n").utf8) + bytes
    }

    /// Connects to 127.0.0.1:`port`, writes `request`, reads one response (by
    /// Content-Length, else to end of file), closes. Blocking work on a thread of its own.
    static func exchange(port: UInt16, _ request: [UInt8], timeout: Duration = .seconds(60)) async throws -> RawHTTPResponse {
        try await onDedicatedThread { try exchangeBlocking(port: port, request, timeout: timeout) }
    }

    private static func exchangeBlocking(port: UInt16, _ request: [UInt8], timeout: Duration) throws -> RawHTTPResponse {
        let raw = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { throw HarnessError("socket(AF_INET): errno \(errno)") }
        let fd = FileDescriptor(rawValue: raw)
        defer { try? Posix.close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(raw, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw HarnessError("connect(127.0.0.1:\(port)): errno \(errno)") }
        _ = signalIgnoredForBrokenPipes
        try request.withUnsafeBytes { try Posix.writeAll(fd, $0) }

        let deadline = ContinuousClock.now + timeout
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var headerEnd: Int?
        var contentLength: Int?
        var response = RawHTTPResponse(status: 0, headers: [], body: [])
        while true {
            if headerEnd == nil, let end = find([13, 10, 13, 10], in: received) {
                headerEnd = end + 4
                response = try parseHead(Array(received[..<end]))
                contentLength = response.header("Content-Length").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            }
            if let headerEnd, let contentLength, received.count >= headerEnd + contentLength {
                response.body = Array(received[headerEnd..<(headerEnd + contentLength)])
                return response
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                throw HarnessError("no complete HTTP response from 127.0.0.1:\(port) within \(timeout); got \(received.count) bytes: \(String(decoding: received.prefix(2000), as: UTF8.self))")
            }
            let ready = try Posix.poll(fd, for: [.input], timeoutMilliseconds: Int32(clamping: left.components.seconds * 1000 + 1))
            if ready.isEmpty { continue }
            let count = try buffer.withUnsafeMutableBytes { try Posix.read(fd, into: $0) } ?? 0
            if count == 0 {
                guard let headerEnd else {
                    throw HarnessError("127.0.0.1:\(port) closed the connection after \(received.count) bytes: \(String(decoding: received, as: UTF8.self))")
                }
                response.body = Array(received[headerEnd...])
                return response
            }
            received += buffer[0..<count]
        }
    }

    private static let signalIgnoredForBrokenPipes: Void = {
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
    }()

    private static func parseHead(_ head: [UInt8]) throws -> RawHTTPResponse {
        let lines = String(decoding: head, as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            throw HarnessError("not an HTTP/1.x status line: \"\(lines[0])\"")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        return RawHTTPResponse(status: status, headers: headers, body: [])
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }
}

/// WS-Man envelopes written as pywinrm writes them (wsman-shell-protocol.md).
enum WSManEnvelope {
    private static func envelope(action: String, messageID: String, selectors: String, options: String, body: String) -> String {
        """
        <?xml version="1.0" encoding="utf-8"?>
        <env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" \
        xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" \
        xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">\
        <env:Header><a:To>http://windows-host:5985/wsman</a:To>\
        <a:ReplyTo><a:Address mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>\
        <w:MaxEnvelopeSize mustUnderstand="true">153600</w:MaxEnvelopeSize><a:MessageID>\(messageID)</a:MessageID>\
        <w:Locale mustUnderstand="false" xml:lang="en-US"></w:Locale><p:DataLocale mustUnderstand="false" xml:lang="en-US"></p:DataLocale>\
        <w:OperationTimeout>PT20S</w:OperationTimeout>\
        <w:ResourceURI mustUnderstand="true">\(GatewayEnvironment.shellResourceURI)</w:ResourceURI>\
        <a:Action mustUnderstand="true">\(action)</a:Action>\(selectors)\(options)</env:Header>\
        <env:Body>\(body)</env:Body></env:Envelope>
        """
    }

    static func createShell(messageID: String = "uuid:" + UUID().uuidString.lowercased()) -> String {
        envelope(
            action: "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create", messageID: messageID, selectors: "",
            options: #"<w:OptionSet><w:Option Name="WINRS_NOPROFILE">FALSE</w:Option><w:Option Name="WINRS_CODEPAGE">437</w:Option></w:OptionSet>"#,
            body: "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>")
    }

    static func deleteShell(_ shellID: String, messageID: String = "uuid:" + UUID().uuidString.lowercased()) -> String {
        envelope(
            action: "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete", messageID: messageID,
            selectors: #"<w:SelectorSet><w:Selector Name="ShellId">\#(shellID)</w:Selector></w:SelectorSet>"#, options: "", body: "")
    }

    /// The text of the first element with the attribute `Name="ShellId"` (as pywinrm finds it).
    static func shellID(in body: String) -> String? {
        guard let attribute = body.range(of: #"Name="ShellId""#),
              let close = body[attribute.upperBound...].firstIndex(of: ">"),
              let end = body[close...].firstIndex(of: "<")
        else { return nil }
        let id = body[body.index(after: close)..<end]
        return id.isEmpty ? nil : String(id)
    }
}
