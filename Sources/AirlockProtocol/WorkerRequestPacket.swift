/// The worker's request path without copies: the six operation requests of the worker
/// channel (`W_SHELL` ... `W_CONNECT`, PROTOCOL.md §5.5) checked in place, exactly as
/// ``Frame/decode(_:range:maxFrameSize:)`` checks them, and read as views into the
/// packet. A worker lays out its request block straight from these views: no `String`,
/// no array and no enum per field.
///
/// Every view points into the packet's memory and is valid only as long as that memory
/// is (for a worker's reader: until its next receive).
public struct WorkerRequestPacket {
    /// `W_SHELL`, `W_COMMAND`, `W_SEND`, `W_RECEIVE`, `W_SIGNAL` or `W_CONNECT`.
    public var type: MessageType
    /// The packet's size in bytes (the whole frame).
    public var byteCount: Int
    public var operationID: UInt64
    public var flags: FrameFlags
    public var context: Context
    public var shellID: UInt64 = 0
    /// 0 for `W_SHELL` (which has none).
    public var commandID: UInt64 = 0

    /// `W_SHELL`.
    public var idleTimeoutMs: UInt32 = 0
    public var inputStreams = WireList<WireString>()
    public var outputStreams = WireList<WireString>()
    public var workingDirectory: WireString?
    public var environment = WireList<WireVariable>()
    public var name: WireString?
    /// `W_SHELL` and `W_COMMAND`.
    public var options = WireList<WireOption>()
    public var optionsMustUnderstand = false
    /// `W_SHELL`: inboundShellInformation; `W_CONNECT`: inboundConnectInformation;
    /// `W_SEND`: the data (always binary).
    public var data = WireData.none
    /// `W_COMMAND`: the command line; `W_SEND`: the stream; `W_SIGNAL`: the code.
    public var text = WireString()
    /// `W_COMMAND`.
    public var arguments = WireList<WireString>()
    /// `W_SEND`.
    public var endOfStream = false
    /// `W_RECEIVE`.
    public var streams = WireList<WireString>()

    /// The request context that starts every operation request.
    public struct Context {
        public var senderName: WireString
        public var authenticationMechanism: WireString
        public var resourceURI: WireString
        public var locale: WireString
        public var dataLocale: WireString
        public var timeoutMs: UInt32
        public var httpURL: WireString
    }

    /// The type of `packet` when it is one of the six operation requests (read with
    /// ``init(packet:type:maxFrameSize:)``); `nil` for a packet shorter than a header or of
    /// any other type (decoded with `Frame.decode`).
    public static func requestType(of packet: UnsafeRawBufferPointer) -> MessageType? {
        guard packet.count >= ProtocolLimits.headerSize else { return nil }
        switch WireCursor.load16(packet, 4) {
        case MessageType.workerShell.rawValue: return .workerShell
        case MessageType.workerCommand.rawValue: return .workerCommand
        case MessageType.workerSend.rawValue: return .workerSend
        case MessageType.workerReceive.rawValue: return .workerReceive
        case MessageType.workerSignal.rawValue: return .workerSignal
        case MessageType.workerConnect.rawValue: return .workerConnect
        default: return nil
        }
    }

    /// Reads one packet (one whole frame) of type `type`, from ``requestType(of:)``; throws
    /// what `Frame.decode` throws for a malformed or oversized request.
    ///
    /// An initializer rather than a function returning the request: the fields are
    /// written in place, never copied.
    public init(packet: UnsafeRawBufferPointer, type: MessageType, maxFrameSize: Int) throws(ProtocolError) {
        assert(WorkerRequestPacket.requestType(of: packet) == type, "\(type.wireName) is not the type of this request packet")
        var r = try WireCursor(frame: packet, type: type, maxFrameSize: maxFrameSize)
        self.type = type
        byteCount = packet.count
        operationID = WireCursor.load64(packet, 8)
        flags = FrameFlags(rawValue: WireCursor.load16(packet, 6))
        context = try r.context()
        shellID = try r.u64("shellId")
        switch type {
        case .workerShell:
            idleTimeoutMs = try r.u32("idleTimeoutMs")
            inputStreams = try r.strings("inputStreams")
            outputStreams = try r.strings("outputStreams")
            workingDirectory = try r.optstr("workingDirectory")
            environment = try r.list("environment", minimumElementSize: 8) { (r: inout WireCursor) throws(ProtocolError) in
                _ = try r.str("envvar.name")
                _ = try r.str("envvar.value")
            }
            name = try r.optstr("name")
            options = try r.options()
            optionsMustUnderstand = try r.bool("optionsMustUnderstand")
            data = try r.data()
        case .workerCommand:
            commandID = try r.u64("commandId")
            text = try r.str("commandLine")
            arguments = try r.strings("arguments")
            options = try r.options()
        case .workerSend:
            commandID = try r.u64("commandId")
            text = try r.str("stream")
            endOfStream = try r.bool("endOfStream")
            data = .binary(try r.blob("data"))
        case .workerReceive:
            commandID = try r.u64("commandId")
            streams = try r.strings("streams")
        case .workerSignal:
            commandID = try r.u64("commandId")
            text = try r.str("code")
        default:  // .workerConnect (requestType(of:))
            commandID = try r.u64("commandId")
            data = try r.data()
        }
        try r.expectEnd(type)
    }
}

/// A `str` field in place: UTF-8 without NUL (checked when the packet was read).
public struct WireString {
    /// The string's bytes (no length prefix, no terminator).
    public var utf8: UnsafeRawBufferPointer

    public init(utf8: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
        self.utf8 = utf8
    }

    /// A copy as a Swift string.
    public var string: String { String(decoding: utf8, as: UTF8.self) }
}

/// A `WSMAN_OPTION` in place.
public struct WireOption {
    public var name: WireString
    public var value: WireString
    public var mustComply: Bool

    public init(name: WireString, value: WireString, mustComply: Bool) {
        self.name = name
        self.value = value
        self.mustComply = mustComply
    }
}

/// A `WSMAN_ENVIRONMENT_VARIABLE` in place.
public struct WireVariable {
    public var name: WireString
    public var value: WireString

    public init(name: WireString, value: WireString) {
        self.name = name
        self.value = value
    }
}

/// A `data` field in place.
public enum WireData {
    case none
    case text(WireString)
    case binary(UnsafeRawBufferPointer)
    case dword(UInt32)
}

/// An element of a ``WireList``: read from bytes already checked.
public protocol WireListElement {
    /// Reads the element at `position` of `bytes` and moves past it; the bytes were
    /// checked when the packet was read, so this never fails.
    static func read(_ bytes: UnsafeRawBufferPointer, at position: inout Int) -> Self
}

/// A `list<T>` in place: its count and the bytes of its elements, checked when the
/// packet was read.
public struct WireList<Element: WireListElement>: Sequence {
    /// The elements' bytes (after the count).
    public var bytes: UnsafeRawBufferPointer
    public var count: Int

    public init(bytes: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0), count: Int = 0) {
        self.bytes = bytes
        self.count = count
    }

    public var isEmpty: Bool { count == 0 }

    public struct Iterator: IteratorProtocol {
        @usableFromInline let bytes: UnsafeRawBufferPointer
        @usableFromInline var left: Int
        @usableFromInline var position = 0

        @usableFromInline init(bytes: UnsafeRawBufferPointer, left: Int) {
            self.bytes = bytes
            self.left = left
        }

        @inlinable public mutating func next() -> Element? {
            guard left > 0 else { return nil }
            left -= 1
            return Element.read(bytes, at: &position)
        }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(bytes: bytes, left: count) }

    public var underestimatedCount: Int { count }
}

extension WireString: WireListElement {
    @inlinable public static func read(_ bytes: UnsafeRawBufferPointer, at position: inout Int) -> WireString {
        let count = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
        let start = position + 4
        position = start + count
        return WireString(utf8: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + count)]))
    }
}

extension WireOption: WireListElement {
    @inlinable public static func read(_ bytes: UnsafeRawBufferPointer, at position: inout Int) -> WireOption {
        let name = WireString.read(bytes, at: &position)
        let value = WireString.read(bytes, at: &position)
        let mustComply = bytes[position] != 0
        position += 1
        return WireOption(name: name, value: value, mustComply: mustComply)
    }
}

extension WireVariable: WireListElement {
    @inlinable public static func read(_ bytes: UnsafeRawBufferPointer, at position: inout Int) -> WireVariable {
        WireVariable(name: WireString.read(bytes, at: &position), value: WireString.read(bytes, at: &position))
    }
}

/// Reads fields of a packet in place with ``ByteReader``'s checks and messages.
struct WireCursor {
    let packet: UnsafeRawBufferPointer
    var position: Int

    /// A cursor after the header of `frame`, one whole frame of type `type` (the caller
    /// read the type), once the header passed ``FrameHeaderRules``.
    init(frame: UnsafeRawBufferPointer, type: MessageType, maxFrameSize: Int) throws(ProtocolError) {
        try FrameHeaderRules.checkLength(Int(WireCursor.load32(frame, 0)), frameSize: frame.count, maxFrameSize: maxFrameSize)
        try FrameHeaderRules.checkFlags(WireCursor.load16(frame, 6), of: type)
        packet = frame
        position = ProtocolLimits.headerSize
    }

    /// Fails unless every byte of a frame of type `type` was read.
    func expectEnd(_ type: MessageType) throws(ProtocolError) {
        if position != packet.count {
            throw ProtocolError.malformed("\(type.wireName): \(packet.count - position) unexpected trailing byte(s)")
        }
    }

    @inline(__always)
    static func load16(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    static func load32(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    static func load64(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    var remaining: Int { packet.count - position }

    @inline(__always)
    func need(_ count: Int, _ field: StaticString) throws(ProtocolError) {
        if count > packet.count - position {
            throw ProtocolError.malformed("truncated field \(field): needs \(count) byte(s), \(packet.count - position) left")
        }
    }

    @inline(__always)
    mutating func u8(_ field: StaticString) throws(ProtocolError) -> UInt8 {
        try need(1, field)
        defer { position += 1 }
        return packet[position]
    }

    @inline(__always)
    mutating func u32(_ field: StaticString) throws(ProtocolError) -> UInt32 {
        try need(4, field)
        defer { position += 4 }
        return WireCursor.load32(packet, position)
    }

    @inline(__always)
    mutating func u64(_ field: StaticString) throws(ProtocolError) -> UInt64 {
        try need(8, field)
        defer { position += 8 }
        return WireCursor.load64(packet, position)
    }

    @inline(__always)
    mutating func bool(_ field: StaticString) throws(ProtocolError) -> Bool {
        switch try u8(field) {
        case 0: return false
        case 1: return true
        case let other: throw ProtocolError.malformed("field \(field): boolean must be 0 or 1, got \(other)")
        }
    }

    @inline(__always)
    mutating func str(_ field: StaticString) throws(ProtocolError) -> WireString {
        let count = Int(try u32(field))
        try need(count, field)
        let bytes = UnsafeRawBufferPointer(start: packet.baseAddress! + position, count: count)
        position += count
        try UTF8Check.check(bytes, field)
        return WireString(utf8: bytes)
    }

    @inline(__always)
    mutating func optstr(_ field: StaticString) throws(ProtocolError) -> WireString? {
        switch try u8(field) {
        case 0: return nil
        case 1: return try str(field)
        case let other: throw ProtocolError.malformed("field \(field): presence byte must be 0 or 1, got \(other)")
        }
    }

    mutating func blob(_ field: StaticString) throws(ProtocolError) -> UnsafeRawBufferPointer {
        let count = Int(try u32(field))
        try need(count, field)
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: packet[position..<(position + count)])
    }

    /// A `list<T>` checked element by element with `check`, whose elements take at least
    /// `minimumElementSize` bytes each.
    mutating func list<Element>(
        _ field: StaticString, minimumElementSize: Int, _ check: (inout WireCursor) throws(ProtocolError) -> Void
    ) throws(ProtocolError) -> WireList<Element> {
        let count = Int(try u32(field))
        if count > remaining / max(minimumElementSize, 1) {
            throw ProtocolError.malformed("field \(field): list count \(count) exceeds the bytes left (\(remaining))")
        }
        let start = position
        for _ in 0..<count { try check(&self) }
        return WireList(bytes: UnsafeRawBufferPointer(rebasing: packet[start..<position]), count: count)
    }

    mutating func strings(_ field: StaticString) throws(ProtocolError) -> WireList<WireString> {
        try list(field, minimumElementSize: 4) { (r: inout WireCursor) throws(ProtocolError) in _ = try r.str(field) }
    }

    mutating func options() throws(ProtocolError) -> WireList<WireOption> {
        try list("options", minimumElementSize: 9) { (r: inout WireCursor) throws(ProtocolError) in
            _ = try r.str("option.name")
            _ = try r.str("option.value")
            _ = try r.bool("option.mustComply")
        }
    }

    mutating func data() throws(ProtocolError) -> WireData {
        switch try u8("data.kind") {
        case 0: return .none
        case 1: return .text(try str("data.text"))
        case 2: return .binary(try blob("data.binary"))
        case 4: return .dword(try u32("data.dword"))
        case let kind: throw ProtocolError.malformed("field data.kind: unknown WSMAN_DATA kind \(kind)")
        }
    }

    mutating func context() throws(ProtocolError) -> WorkerRequestPacket.Context {
        WorkerRequestPacket.Context(
            senderName: try str("context.senderName"),
            authenticationMechanism: try str("context.authenticationMechanism"),
            resourceURI: try str("context.resourceUri"),
            locale: try str("context.locale"),
            dataLocale: try str("context.dataLocale"),
            timeoutMs: try u32("context.timeoutMs"),
            httpURL: try str("context.httpUrl"))
    }
}

/// The rule of ``ByteReader/str(_:)`` for bytes in place: valid UTF-8 without NUL.
enum UTF8Check {
    /// Throws what ``ByteReader/str(_:)`` throws for these bytes.
    @inline(__always)
    static func check(_ bytes: UnsafeRawBufferPointer, _ field: StaticString) throws(ProtocolError) {
        if asciiPrefix(bytes) != .ascii { try checkBeyondASCII(bytes, field) }
    }

    /// ``check(_:_:)`` for bytes that are not all ASCII without NUL.
    @inline(never)
    static func checkBeyondASCII(_ bytes: UnsafeRawBufferPointer, _ field: StaticString) throws(ProtocolError) {
        if asciiPrefix(bytes) == .nul {
            // ByteReader validates up to the first NUL: an ASCII prefix is valid.
            throw ProtocolError.malformed("field \(field): string contains NUL")
        }
        // Beyond ASCII: the standard library's strict validation, as ByteReader does it.
        let count = bytes.count
        let valid = withUnsafeTemporaryAllocation(of: CChar.self, capacity: count + 1) { cString -> Int? in
            UnsafeMutableRawBufferPointer(cString).copyMemory(from: bytes)
            cString[count] = 0
            return String(validatingCString: cString.baseAddress!)?.utf8.count
        }
        guard let decodedCount = valid else {
            throw ProtocolError.malformed("field \(field): string is not valid UTF-8")
        }
        if decodedCount != count {
            throw ProtocolError.malformed("field \(field): string contains NUL")
        }
    }

    enum Prefix {
        /// Every byte is ASCII and none is NUL.
        case ascii
        /// A NUL comes before any byte beyond ASCII.
        case nul
        /// A byte beyond ASCII comes before any NUL.
        case other
    }

    /// How `bytes` start, read eight bytes at a time.
    @inline(__always)
    static func asciiPrefix(_ bytes: UnsafeRawBufferPointer) -> Prefix {
        let count = bytes.count
        var index = 0
        while index + 8 <= count {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            // A byte with its high bit set, or a zero byte (the classic has-zero test).
            let high = word & 0x8080_8080_8080_8080
            let zero = (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080
            if high | zero != 0 { break }
            index += 8
        }
        while index < count {
            let byte = bytes[index]
            if byte == 0 { return .nul }
            if byte >= 0x80 { return .other }
            index += 1
        }
        return .ascii
    }
}
