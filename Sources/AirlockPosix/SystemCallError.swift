import CAirlockShims
import Glibc
@_exported import SystemPackage

/// A failed system call: which call (with the argument that matters, e.g. the path) and the
/// `errno` it set.
///
/// Its description reads like `connect(/run/x.sock): No such file or directory (ENOENT)`.
public struct SystemCallError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The call and its salient argument, e.g. `"connect(/run/x.sock)"` or `"epoll_wait"`.
    public let call: String
    /// The error number the call reported.
    public let errno: Errno

    /// Creates an error for `call` failing with `errno`.
    public init(call: String, errno: Errno) {
        self.call = call
        self.errno = errno
    }

    /// Creates an error for `call` from the calling thread's current `errno`.
    public init(call: String) {
        self.init(call: call, errno: Errno(rawValue: Glibc.errno))
    }

    /// The symbolic name of the error number, e.g. `"ENOENT"` (`"E<number>"` when unknown).
    public var errnoName: String { SystemCallError.name(of: errno) }

    public var description: String {
        "\(call): \(String(cString: strerror(errno.rawValue))) (\(errnoName))"
    }

    /// The symbolic name of an error number, e.g. `"EAGAIN"`.
    public static func name(of errno: Errno) -> String {
        if let name = airlock_errno_name(errno.rawValue) { return String(cString: name) }
        return "E\(errno.rawValue)"
    }
}

/// Runs `body` (a call returning -1 and setting `errno` on failure) until it does not fail
/// with `EINTR`, and turns any other failure into a ``SystemCallError`` named `call`.
@inline(__always)
@usableFromInline
internal func retryingInterrupts<Result: FixedWidthInteger>(
    _ call: @autoclosure () -> String,
    _ body: @autoclosure () -> Result
) throws(SystemCallError) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Glibc.errno
        if error == EINTR { continue }
        throw SystemCallError(call: call(), errno: Errno(rawValue: error))
    }
}

/// Like ``retryingInterrupts(_:_:)`` but returns `nil` when the call would block
/// (`EAGAIN`/`EWOULDBLOCK`), for non-blocking descriptors.
@inline(__always)
@usableFromInline
internal func retryingInterruptsUnlessWouldBlock<Result: FixedWidthInteger>(
    _ call: @autoclosure () -> String,
    _ body: @autoclosure () -> Result
) throws(SystemCallError) -> Result? {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Glibc.errno
        if error == EINTR { continue }
        if error == EAGAIN || error == EWOULDBLOCK { return nil }
        throw SystemCallError(call: call(), errno: Errno(rawValue: error))
    }
}
