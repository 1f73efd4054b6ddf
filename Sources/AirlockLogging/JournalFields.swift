import Logging

/// Turns one log entry into the journal's `FIELD=value` strings (pure: no I/O).
///
/// Fields: `MESSAGE`, `PRIORITY` (syslog level, see ``priority(for:)``),
/// `SYSLOG_IDENTIFIER`, `LOGGER` (the swift-log label, when it differs from the identifier),
/// `CODE_FILE`, `CODE_LINE`, `CODE_FUNC`, `ERROR` (when the event carries one), and one
/// field per metadata key, its name from ``fieldName(forMetadataKey:)``: `plugin` becomes
/// `PLUGIN`, `worker_pid` `WORKER_PID`, `operation_id` `OPERATION_ID`.
public enum JournalFields {
    /// The fields this type writes itself; a metadata key that maps onto one of them is
    /// written as `META_<NAME>` instead, so it can never replace the message or priority.
    public static let reservedNames: Set<String> = [
        "MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "SYSLOG_PID",
        "SYSLOG_TIMESTAMP", "LOGGER", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "ERROR", "ERRNO",
    ]

    /// journald's limit on the length of a field name.
    public static let maximumNameLength = 64

    /// Builds the field list for one entry, in a fixed order: the standard fields first, then
    /// the metadata fields sorted by name.
    public static func fields(
        identifier: String,
        label: String,
        level: Logger.Level,
        message: String,
        metadata: Logger.Metadata,
        error: (any Error)? = nil,
        file: String,
        function: String,
        line: UInt
    ) -> [String] {
        var fields = [
            "MESSAGE=" + message,
            "PRIORITY=\(priority(for: level))",
            "SYSLOG_IDENTIFIER=" + identifier,
        ]
        if label != identifier { fields.append("LOGGER=" + label) }
        fields.append("CODE_FILE=" + file)
        fields.append("CODE_LINE=\(line)")
        fields.append("CODE_FUNC=" + function)
        if let error { fields.append("ERROR=" + String(describing: error)) }

        var metadataFields: [(name: String, value: String)] = []
        metadataFields.reserveCapacity(metadata.count)
        for (key, value) in metadata {
            guard let name = fieldName(forMetadataKey: key) else { continue }
            metadataFields.append((name, format(value)))
        }
        metadataFields.sort { $0.name < $1.name }
        for field in metadataFields { fields.append(field.name + "=" + field.value) }
        return fields
    }

    /// The syslog priority journald stores in `PRIORITY=` for a swift-log level:
    /// trace and debug 7, info 6, notice 5, warning 4, error 3, critical 2.
    public static func priority(for level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// The journal field name for a metadata key: upper-cased, every character outside
    /// `[A-Z0-9_]` replaced by `_`, leading underscores dropped (they mark trusted fields
    /// journald sets itself), `META_` put in front of a name that starts with a digit or is in
    /// ``reservedNames``, cut to 64 characters. `nil` when nothing is left.
    public static func fieldName(forMetadataKey key: String) -> String? {
        var name = ""
        name.reserveCapacity(key.utf8.count)
        for byte in key.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
                name.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "a")...UInt8(ascii: "z"):
                name.unicodeScalars.append(Unicode.Scalar(byte - 32))
            case 0x80...0xBF:
                continue  // continuation byte of a multi-byte character: its lead byte made the `_`
            default:
                name.unicodeScalars.append("_")
            }
        }
        while name.first == "_" { name.removeFirst() }
        guard let first = name.first else { return nil }
        if first.isNumber || reservedNames.contains(name) { name = "META_" + name }
        if name.utf8.count > maximumNameLength { name = String(name.prefix(maximumNameLength)) }
        return name
    }

    /// A metadata value as text: strings as they are, lists and dictionaries as swift-log
    /// prints them.
    public static func format(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        default: value.description
        }
    }
}
