/// Cuts a byte stream (a plug-in's stdout or stderr, read in chunks from a pipe) into
/// lines to log, one per `\n`.
///
/// A line longer than ``maximumLineLength`` bytes is cut there, as journald cuts its own
/// stream lines (`LineMax=`). Invalid UTF-8 becomes U+FFFD; a trailing `\r` is dropped.
public struct OutputLineSplitter: Sendable {
    /// The longest line returned, in bytes; longer ones are returned in pieces.
    public let maximumLineLength: Int
    private var pending: [UInt8] = []

    public init(maximumLineLength: Int = 4096) {
        precondition(maximumLineLength >= 1, "OutputLineSplitter needs a positive line length")
        self.maximumLineLength = maximumLineLength
    }

    /// Adds a chunk and returns the lines it completed.
    public mutating func append(_ bytes: some Sequence<UInt8>) -> [String] {
        var lines: [String] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                lines.append(takePending())
            } else {
                pending.append(byte)
                if pending.count >= maximumLineLength { lines.append(takePending()) }
            }
        }
        return lines
    }

    /// The unfinished last line, if any (call when the stream ends).
    public mutating func finish() -> String? {
        pending.isEmpty ? nil : takePending()
    }

    private mutating func takePending() -> String {
        if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
        let line = String(decoding: pending, as: UTF8.self)
        pending.removeAll(keepingCapacity: true)
        return line
    }
}
