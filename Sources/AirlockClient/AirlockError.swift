@_exported import AirlockProtocol
import AirlockPosix
import Glibc

/// Why an Airlock operation failed: a WSMan/Win32 error code, the plug-in's extended
/// information (passed to `WSManPluginOperationComplete`, unchanged) and a human sentence.
///
/// Failures that never reached a plug-in (no daemon at the socket, a lost connection, a
/// protocol violation, a local cancellation) are reported the same way, with a WSMan code
/// that fits and a ``kind`` that tells them apart.
public struct AirlockError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where a failure came from.
    public enum Kind: Sendable, Hashable {
        /// `airlockd` completed the operation with an error (the plug-in's or its own).
        case operationFailed
        /// No connection could be made to `airlockd` (nothing listening, permission denied).
        case unreachable
        /// The connection was lost, or closed by ``AirlockConnection/close()``, before the
        /// operation completed.
        case connectionLost
        /// `airlockd` sent bytes this client cannot accept, or reported a protocol error.
        case protocolViolation
        /// The operation was cancelled before it was sent.
        case cancelled
    }

    /// Where the failure came from.
    public var kind: Kind
    /// The WSMan or Win32 error code (`<wsman.h>`), never 0.
    public var code: UInt32
    /// The plug-in's extended information, unchanged, when it gave one.
    public var extendedInformation: String?
    /// Airlock's sentence: what failed, where, and what to do.
    public var message: String

    /// Creates an error.
    public init(kind: Kind = .operationFailed, code: UInt32, extendedInformation: String? = nil, message: String) {
        self.kind = kind
        self.code = code
        self.extendedInformation = extendedInformation
        self.message = message
    }

    /// The symbolic name of ``code`` with its value, e.g.
    /// `ERROR_WSMAN_PLUGIN_FAILED (0x80338083)`.
    public var name: String { WSManError.name(code) }

    /// `NAME (CODE): message`, followed by the plug-in's extended information when present.
    public var description: String {
        var text = name
        if !message.isEmpty { text += ": " + message }
        if let extendedInformation, !extendedInformation.isEmpty, extendedInformation != message {
            text += " (plug-in says: \(extendedInformation))"
        }
        return text
    }
}

extension AirlockError {
    /// `connect` to the socket failed.
    static func unreachable(socketPath: String, _ error: SystemCallError) -> AirlockError {
        AirlockError(
            kind: .unreachable, code: WSManError.serviceStreamDisconnected,
            message: "cannot connect to airlockd at \(socketPath): \(String(cString: strerror(error.errno.rawValue)))")
    }

    /// The connection ended while operations were in flight.
    static func connectionLost(socketPath: String, _ reason: String) -> AirlockError {
        AirlockError(
            kind: .connectionLost, code: WSManError.serviceStreamDisconnected,
            message: "the connection to airlockd at \(socketPath) was lost: \(reason)")
    }

    /// The client closed the connection itself.
    static func closedByClient(socketPath: String) -> AirlockError {
        AirlockError(
            kind: .connectionLost, code: WSManError.serviceStreamDisconnected,
            message: "the connection to airlockd at \(socketPath) was closed by this client")
    }

    /// The peer broke the protocol.
    static func protocolViolation(_ error: ProtocolError, socketPath: String) -> AirlockError {
        AirlockError(
            kind: .protocolViolation, code: error.code,
            message: "airlockd at \(socketPath) sent a frame this client rejects: \(error.message)")
    }

    /// An operation cancelled before its request left this process.
    static let cancelledBeforeSending = AirlockError(
        kind: .cancelled, code: WSManError.operationAborted, message: "the operation was cancelled before it was sent")

    /// The server answered with a frame that does not fit the request.
    static func unexpectedAnswer(_ message: Message, to request: MessageType) -> AirlockError {
        AirlockError(
            kind: .protocolViolation, code: WSManError.invalidProviderResponse,
            message: "airlockd answered \(request.wireName) with \(message.type.wireName)")
    }
}
