import Glibc
import Logging

/// Where Airlock's executables send their logs, chosen once at startup.
public enum AirlockLog {
    /// The destination ``bootstrap(label:level:)`` picks.
    public enum Destination: Sendable, Equatable {
        /// The systemd journal, with structured fields (``JournaldLogHandler``).
        case journal
        /// Plain lines on stderr (``StderrLogHandler``).
        case standardError
    }

    /// Installs the process-wide swift-log backend (`LoggingSystem.bootstrap`, so call it
    /// once, first thing in `main`): the journal when stderr is connected to it, else stderr.
    ///
    /// - Parameters:
    ///   - label: the program name, written as `SYSLOG_IDENTIFIER=` (e.g. `airlockd`).
    ///     Each `Logger`'s own label is written as `LOGGER=` when it differs.
    ///   - level: the lowest level written by loggers created afterwards.
    ///   - metadataProvider: metadata added to every entry (e.g. from task locals), if any.
    /// - Returns: the destination chosen, for a startup log line.
    @discardableResult
    public static func bootstrap(
        label: String,
        level: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil
    ) -> Destination {
        let destination = defaultDestination()
        LoggingSystem.bootstrap(
            { loggerLabel, metadataProvider in
                makeHandler(
                    destination: destination,
                    identifier: label,
                    label: loggerLabel,
                    level: level,
                    metadataProvider: metadataProvider
                )
            },
            metadataProvider: metadataProvider
        )
        return destination
    }

    /// A handler for the destination, without touching the global logging system.
    public static func makeHandler(
        destination: Destination,
        identifier: String,
        label: String,
        level: Logger.Level,
        metadataProvider: Logger.MetadataProvider? = nil
    ) -> any LogHandler {
        switch destination {
        case .journal:
            JournaldLogHandler(label: label, identifier: identifier, logLevel: level, metadataProvider: metadataProvider)
        case .standardError:
            StderrLogHandler(label: label, logLevel: level, metadataProvider: metadataProvider)
        }
    }

    /// ``Destination/journal`` when ``isStandardErrorJournalStream()``, else ``Destination/standardError``.
    public static func defaultDestination() -> Destination {
        isStandardErrorJournalStream() ? .journal : .standardError
    }

    /// Whether stderr is the journal stream systemd connected the service to: `$JOURNAL_STREAM`
    /// is `<device>:<inode>` and matches stderr's `fstat(2)`, as `systemd.exec(5)` says to check
    /// (a child whose stderr was redirected elsewhere inherits the variable but fails the check).
    public static func isStandardErrorJournalStream() -> Bool {
        guard let value = getenv("JOURNAL_STREAM") else { return false }
        guard let stream = parseJournalStream(String(cString: value)) else { return false }
        var status = stat()
        guard fstat(STDERR_FILENO, &status) == 0 else { return false }
        return UInt64(status.st_dev) == stream.device && UInt64(status.st_ino) == stream.inode
    }

    /// Parses `$JOURNAL_STREAM` (`"<device>:<inode>"`, both decimal).
    static func parseJournalStream(_ value: String) -> (device: UInt64, inode: UInt64)? {
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return nil }
        return (device, inode)
    }
}
