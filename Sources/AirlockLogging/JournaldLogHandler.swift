import CSystemd
import Glibc
import Logging

/// A swift-log handler that writes each entry to the systemd journal as one structured
/// record (`sd_journal_sendv(3)`), with the fields ``JournalFields`` builds.
///
/// Metadata becomes searchable fields: `journalctl PLUGIN=echo`, `journalctl -o json`.
/// When the journal cannot be reached the entry is written to stderr instead, in
/// ``StderrLogHandler``'s format.
public struct JournaldLogHandler: LogHandler {
    /// `SYSLOG_IDENTIFIER=`: the program name `journalctl -t` filters on, e.g. `airlockd`.
    public let identifier: String
    /// The swift-log label of the logger; written as `LOGGER=` when it differs from ``identifier``.
    public let label: String
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    /// Creates a handler.
    ///
    /// - Parameters:
    ///   - label: the logger's label (`Logger(label:)`).
    ///   - identifier: the `SYSLOG_IDENTIFIER`; by default the label.
    ///   - logLevel: the lowest level written.
    ///   - metadataProvider: extra metadata added to every entry, e.g. from task locals.
    public init(
        label: String,
        identifier: String? = nil,
        logLevel: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil
    ) {
        self.label = label
        self.identifier = identifier ?? label
        self.logLevel = logLevel
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = mergedMetadata(handler: metadata, provider: metadataProvider, explicit: event.metadata)
        let fields = JournalFields.fields(
            identifier: identifier,
            label: label,
            level: event.level,
            message: event.message.description,
            metadata: merged,
            error: event.error,
            file: event.file,
            function: event.function,
            line: event.line
        )
        if Self.send(fields) != 0 {
            let line = StderrLogHandler.formatLine(
                level: event.level,
                label: label,
                message: event.message.description,
                metadata: merged,
                error: event.error
            )
            StandardError.write(line)
        }
    }

    /// Sends one record made of `FIELD=value` strings to the journal.
    ///
    /// - Returns: 0 on success, or the negative `errno` that `sd_journal_sendv` returned.
    @discardableResult
    public static func send(_ fields: [String]) -> Int32 {
        // One contiguous buffer holding every field, and one iovec per field pointing into it.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(fields.reduce(0) { $0 + $1.utf8.count })
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(fields.count)
        for field in fields {
            let start = bytes.count
            bytes.append(contentsOf: field.utf8)
            ranges.append(start..<bytes.count)
        }
        return bytes.withUnsafeMutableBytes { buffer -> Int32 in
            var vectors = ranges.map { range in
                iovec(iov_base: buffer.baseAddress.map { $0 + range.lowerBound }, iov_len: range.count)
            }
            return vectors.withUnsafeMutableBufferPointer { vectorBuffer in
                sd_journal_sendv(vectorBuffer.baseAddress, Int32(vectorBuffer.count))
            }
        }
    }
}

/// The metadata of one entry: the handler's, then the provider's, then the call's, later
/// ones replacing earlier keys (swift-log's documented order).
func mergedMetadata(
    handler: Logger.Metadata,
    provider: Logger.MetadataProvider?,
    explicit: Logger.Metadata?
) -> Logger.Metadata {
    var merged = handler
    if let provided = provider?.get(), !provided.isEmpty {
        merged.merge(provided) { _, new in new }
    }
    if let explicit, !explicit.isEmpty {
        merged.merge(explicit) { _, new in new }
    }
    return merged
}
