import Glibc
import Logging

/// A swift-log handler that writes one line per entry to a file descriptor (stderr by
/// default) with one `write(2)`:
///
///     <level> <label>: <message> key=value key="value with spaces" ...
///
/// for example `warning airlockd: worker exited plugin=echo signal=SIGSEGV worker_pid=4242`.
/// Metadata keys are sorted; control characters in the message and in values are escaped
/// (`\n`, `\t`, `\u{1B}`) so an entry never spans two lines. No timestamp: used when not
/// under journald, where the terminal or the collecting system adds one.
public struct StderrLogHandler: LogHandler {
    public let label: String
    /// The file descriptor written to; 2 unless a test passes a pipe.
    public let fileDescriptor: Int32
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public init(
        label: String,
        fileDescriptor: Int32 = STDERR_FILENO,
        logLevel: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil
    ) {
        self.label = label
        self.fileDescriptor = fileDescriptor
        self.logLevel = logLevel
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let line = Self.formatLine(
            level: event.level,
            label: label,
            message: event.message.description,
            metadata: mergedMetadata(handler: metadata, provider: metadataProvider, explicit: event.metadata),
            error: event.error
        )
        StandardError.write(line, to: fileDescriptor)
    }

    /// The line for one entry, ending in `\n`. An error attached to the event is written as
    /// the metadata key `error`, unless the metadata already has one.
    public static func formatLine(
        level: Logger.Level,
        label: String,
        message: String,
        metadata: Logger.Metadata,
        error: (any Error)? = nil
    ) -> String {
        var line = "\(level.rawValue) \(label): " + escaped(message)
        var pairs = metadata.map { (key: $0.key, value: JournalFields.format($0.value)) }
        if let error, metadata["error"] == nil { pairs.append((key: "error", value: String(describing: error))) }
        pairs.sort { $0.key < $1.key }
        for pair in pairs {
            line += " " + escaped(pair.key) + "=" + quotedIfNeeded(pair.value)
        }
        line += "\n"
        return line
    }

    /// The value as is, or in double quotes with `"` and `\` escaped when it is empty or
    /// holds whitespace, `"`, `=` or control characters.
    static func quotedIfNeeded(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.unicodeScalars.contains { scalar in
            scalar == " " || scalar == "\"" || scalar == "=" || scalar == "\\"
                || scalar.properties.isWhitespace || scalar.properties.generalCategory == .control
        }
        guard needsQuotes else { return value }
        var quoted = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            default: quoted += escapedScalar(scalar)
            }
        }
        return quoted + "\""
    }

    /// The text with control characters escaped, everything else unchanged.
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return text }
        var result = ""
        for scalar in text.unicodeScalars { result += escapedScalar(scalar) }
        return result
    }

    private static func escapedScalar(_ scalar: Unicode.Scalar) -> String {
        switch scalar {
        case "\n": return "\\n"
        case "\r": return "\\r"
        case "\t": return "\\t"
        default:
            if scalar.properties.generalCategory == .control {
                return "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
            return String(scalar)
        }
    }
}

/// Writes whole lines to a file descriptor (stderr by default), retrying on `EINTR` and
/// after partial writes. Errors are dropped: a logger has nowhere to report them.
enum StandardError {
    static func write(_ text: String, to fileDescriptor: Int32 = STDERR_FILENO) {
        var text = text
        text.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
