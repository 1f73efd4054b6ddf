/// A violation of the wire protocol: a malformed, oversized or unexpected frame.
///
/// The receiver answers it with an `ERROR` frame carrying ``code`` and ``message``
/// and closes the connection (PROTOCOL.md §2).
public struct ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The WSMan/Win32 error code sent in the `ERROR` frame.
    public var code: UInt32
    /// What was wrong, in words a peer's developer can act on.
    public var message: String

    public init(code: UInt32, message: String) {
        self.code = code
        self.message = message
    }

    /// A frame whose bytes do not follow the encoding.
    public static func malformed(_ message: String) -> ProtocolError {
        ProtocolError(code: WSManError.invalidParameter, message: "malformed frame: \(message)")
    }

    /// A frame larger than the negotiated maximum.
    public static func oversized(_ size: Int, limit: Int) -> ProtocolError {
        ProtocolError(
            code: WSManError.maxEnvelopeSizeExceeded,
            message: "frame of \(size) bytes exceeds the maximum frame size of \(limit) bytes"
        )
    }

    public var description: String { "protocol error \(WSManError.name(code)): \(message)" }
}
