import AirlockLogging
import Glibc
import Logging
import Testing

struct JournalFieldsTests {
    @Test func standardFieldsThenMetadataSortedByName() {
        let fields = JournalFields.fields(
            identifier: "airlockd",
            label: "airlock.supervisor",
            level: .warning,
            message: "worker exited",
            metadata: [
                "worker_pid": "4242",
                "plugin": "echo",
                "operation_id": .stringConvertible(17),
                "shell_id": "3",
                "wsman_error": "2150858843",
            ],
            file: "AirlockSupervisor/Worker.swift",
            function: "reap()",
            line: 88
        )
        #expect(fields == [
            "MESSAGE=worker exited",
            "PRIORITY=4",
            "SYSLOG_IDENTIFIER=airlockd",
            "LOGGER=airlock.supervisor",
            "CODE_FILE=AirlockSupervisor/Worker.swift",
            "CODE_LINE=88",
            "CODE_FUNC=reap()",
            "OPERATION_ID=17",
            "PLUGIN=echo",
            "SHELL_ID=3",
            "WORKER_PID=4242",
            "WSMAN_ERROR=2150858843",
        ])
    }

    @Test func noLoggerFieldWhenTheLabelIsTheIdentifierAndErrorsAreWritten() {
        struct Refused: Error, CustomStringConvertible { var description: String { "config refused" } }
        let fields = JournalFields.fields(
            identifier: "airlockd", label: "airlockd", level: .error, message: "reload failed",
            metadata: [:], error: Refused(), file: "f.swift", function: "g()", line: 1
        )
        #expect(fields == [
            "MESSAGE=reload failed", "PRIORITY=3", "SYSLOG_IDENTIFIER=airlockd",
            "CODE_FILE=f.swift", "CODE_LINE=1", "CODE_FUNC=g()", "ERROR=config refused",
        ])
    }

    @Test func multiLineMessagesStayInOneField() {
        let fields = JournalFields.fields(
            identifier: "a", label: "a", level: .info, message: "line one\nline two",
            metadata: ["detail": "x\ny"], file: "f", function: "g", line: 2
        )
        #expect(fields.first == "MESSAGE=line one\nline two")
        #expect(fields.last == "DETAIL=x\ny")
    }

    @Test func prioritiesFollowSyslog() {
        #expect(JournalFields.priority(for: .trace) == 7)
        #expect(JournalFields.priority(for: .debug) == 7)
        #expect(JournalFields.priority(for: .info) == 6)
        #expect(JournalFields.priority(for: .notice) == 5)
        #expect(JournalFields.priority(for: .warning) == 4)
        #expect(JournalFields.priority(for: .error) == 3)
        #expect(JournalFields.priority(for: .critical) == 2)
    }

    @Test(arguments: [
        ("plugin", "PLUGIN"),
        ("worker_pid", "WORKER_PID"),
        ("operation_id", "OPERATION_ID"),
        ("shell_id", "SHELL_ID"),
        ("wsman_error", "WSMAN_ERROR"),
        ("resource-uri", "RESOURCE_URI"),
        ("peer.uid", "PEER_UID"),
        ("_pid", "PID"),
        ("__cursor", "CURSOR"),
        ("2fa", "META_2FA"),
        ("message", "META_MESSAGE"),
        ("Priority", "META_PRIORITY"),
        ("código", "C_DIGO"),
        ("Ω", nil),
        ("", nil),
        ("___", nil),
    ] as [(String, String?)])
    func metadataKeysBecomeJournalFieldNames(key: String, name: String?) {
        #expect(JournalFields.fieldName(forMetadataKey: key) == name)
    }

    @Test func fieldNamesAreCutTo64Characters() {
        let name = JournalFields.fieldName(forMetadataKey: String(repeating: "k", count: 100))
        #expect(name == String(repeating: "K", count: 64))
    }

    @Test func structuredValuesArePrintedAsSwiftLogDoes() {
        #expect(JournalFields.format(.array(["a", "b"])) == Logger.MetadataValue.array(["a", "b"]).description)
        #expect(JournalFields.format(.string("plain")) == "plain")
    }
}

struct StderrLogHandlerTests {
    @Test func oneLineWithSortedQuotedMetadata() {
        let line = StderrLogHandler.formatLine(
            level: .warning,
            label: "airlockd",
            message: "worker exited",
            metadata: ["worker_pid": "4242", "plugin": "echo", "reason": "killed by SIGSEGV", "empty": ""]
        )
        #expect(line == "warning airlockd: worker exited empty=\"\" plugin=echo reason=\"killed by SIGSEGV\" worker_pid=4242\n")
    }

    @Test func controlCharactersAreEscapedSoAnEntryIsOneLine() {
        let line = StderrLogHandler.formatLine(
            level: .info, label: "airlockd", message: "a\nb\tc\u{1B}", metadata: ["out": "x\"y\\z\n"]
        )
        #expect(line == "info airlockd: a\\nb\\tc\\u{1B} out=\"x\\\"y\\\\z\\n\"\n")
    }

    @Test func errorsAreWrittenAsMetadata() {
        struct Broken: Error, CustomStringConvertible { var description: String { "bad json" } }
        let line = StderrLogHandler.formatLine(level: .error, label: "l", message: "m", metadata: [:], error: Broken())
        #expect(line == "error l: m error=\"bad json\"\n")
    }

    @Test func loggerWritesThroughTheHandler() throws {
        var ends: [Int32] = [0, 0]
        try #require(pipe(&ends) == 0)
        defer { close(ends[0]) }
        var logger = Logger(label: "airlockd") { label in
            StderrLogHandler(label: label, fileDescriptor: ends[1], logLevel: .info)
        }
        logger[metadataKey: "plugin"] = "echo"
        logger.debug("not written: below the level")
        logger.info("started", metadata: ["worker_pid": "7"])
        logger.logLevel = .trace
        logger.trace("now written")
        close(ends[1])

        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
            if count <= 0 { break }
            output += buffer[..<count]
        }
        #expect(String(decoding: output, as: UTF8.self) == "info airlockd: started plugin=echo worker_pid=7\ntrace airlockd: now written plugin=echo\n")
    }
}

/// `$JOURNAL_STREAM` is process-wide: these run one at a time.
@Suite(.serialized)
struct JournalStreamDetectionTests {
    private func standardErrorIdentity() throws -> String {
        var status = stat()
        try #require(fstat(STDERR_FILENO, &status) == 0)
        return "\(status.st_dev):\(status.st_ino)"
    }

    @Test func journalWhenJournalStreamMatchesStandardError() throws {
        let identity = try standardErrorIdentity()
        withEnvironment(["JOURNAL_STREAM": identity]) {
            #expect(AirlockLog.isStandardErrorJournalStream())
            #expect(AirlockLog.defaultDestination() == .journal)
        }
    }

    @Test func standardErrorWhenJournalStreamIsForAnotherFile() throws {
        let identity = try standardErrorIdentity()
        let device = identity.split(separator: ":")[0]
        withEnvironment(["JOURNAL_STREAM": "\(device):1"]) {
            #expect(!AirlockLog.isStandardErrorJournalStream())
        }
        withEnvironment(["JOURNAL_STREAM": "garbage"]) {
            #expect(AirlockLog.defaultDestination() == .standardError)
        }
        withEnvironment(["JOURNAL_STREAM": nil]) {
            #expect(AirlockLog.defaultDestination() == .standardError)
        }
    }

    @Test func handlersForEachDestination() {
        let journal = AirlockLog.makeHandler(destination: .journal, identifier: "airlockd", label: "x", level: .notice)
        #expect(journal is JournaldLogHandler)
        #expect(journal.logLevel == .notice)
        let plain = AirlockLog.makeHandler(destination: .standardError, identifier: "airlockd", label: "x", level: .debug)
        #expect(plain is StderrLogHandler)
    }
}

struct RateLimiterTests {
    @Test func burstPerWindowPerKeyThenReportsWhatWasDropped() {
        let limiter = RateLimiter(burst: 3, interval: .seconds(10))
        let start = ContinuousClock.now
        for _ in 0..<3 { #expect(limiter.admit("echo", at: start) == .log(suppressedBefore: 0)) }
        #expect(limiter.admit("echo", at: start + .seconds(1)) == .suppress)
        #expect(limiter.admit("echo", at: start + .seconds(9)) == .suppress)
        // Another plug-in has its own budget.
        #expect(limiter.admit("shell", at: start + .seconds(9)) == .log(suppressedBefore: 0))
        // A new window: the first line carries the count dropped in the last one.
        #expect(limiter.admit("echo", at: start + .seconds(10)) == .log(suppressedBefore: 2))
        #expect(limiter.admit("echo", at: start + .seconds(11)) == .log(suppressedBefore: 0))
    }

    @Test func expireReportsSilentWindowsThatDroppedLines() {
        let limiter = RateLimiter(burst: 1, interval: .seconds(5))
        let start = ContinuousClock.now
        _ = limiter.admit("quiet", at: start)
        _ = limiter.admit("noisy", at: start)
        for _ in 0..<4 { _ = limiter.admit("noisy", at: start + .seconds(1)) }
        #expect(limiter.expire(at: start + .seconds(4)) == [])
        #expect(limiter.expire(at: start + .seconds(5)) == [RateLimiter.Suppression(key: "noisy", count: 4)])
        // Reported once: the window is gone.
        #expect(limiter.expire(at: start + .seconds(60)) == [])
        #expect(limiter.admit("noisy", at: start + .seconds(61)) == .log(suppressedBefore: 0))
    }

    @Test func removeReturnsThePendingCount() {
        let limiter = RateLimiter(burst: 1, interval: .seconds(5))
        let start = ContinuousClock.now
        _ = limiter.admit("echo", at: start)
        _ = limiter.admit("echo", at: start)
        #expect(limiter.remove("echo") == 1)
        #expect(limiter.remove("echo") == 0)
    }
}

struct OutputLineSplitterTests {
    @Test func linesAcrossChunks() {
        var splitter = OutputLineSplitter()
        #expect(splitter.append(Array("hel".utf8)) == [])
        #expect(splitter.append(Array("lo\r\nwor".utf8)) == ["hello"])
        #expect(splitter.append(Array("ld\n\n".utf8)) == ["world", ""])
        #expect(splitter.finish() == nil)
        #expect(splitter.append(Array("tail".utf8)) == [])
        #expect(splitter.finish() == "tail")
    }

    @Test func longLinesAreCutAndInvalidUTF8Replaced() {
        var splitter = OutputLineSplitter(maximumLineLength: 4)
        #expect(splitter.append(Array("abcdefghij\n".utf8)) == ["abcd", "efgh", "ij"])
        var lenient = OutputLineSplitter()
        #expect(lenient.append([0x61, 0xFF, 0x62, 0x0A]) == ["a\u{FFFD}b"])
    }
}
