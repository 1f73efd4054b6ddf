/// Frame flags (PROTOCOL.md §2).
public struct FrameFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// This frame ends its operation.
    public static let final = FrameFlags(rawValue: 1)
}

/// Protocol constants.
public enum ProtocolLimits {
    /// The only protocol version this implementation speaks.
    public static let version: UInt16 = 1
    /// Size of the fixed frame header, length prefix included.
    public static let headerSize = 16
    /// The default maximum frame size: WinRM's `MaxEnvelopeSizekb` default of 500.
    public static let defaultMaxFrameSize = 512_000
    /// The maximum frame size before the handshake completes.
    public static let handshakeMaxFrameSize = 4096
    /// Seconds a connection may stay in the middle of a frame.
    public static let partialFrameTimeoutSeconds = 10
}

/// The rules of a frame's header (PROTOCOL.md §2), written once for every reader: the
/// decoder of whole frames, the stream decoder and the in-place readers of worker packets.
enum FrameHeaderRules {
    /// The length prefix (`length`, the bytes after it) is at least 12 and the frame fits
    /// in `maxFrameSize`; with `frameSize` (a whole frame or packet at hand), the prefix
    /// also says exactly that size.
    @inline(__always)
    static func checkLength(_ length: Int, frameSize: Int? = nil, maxFrameSize: Int) throws(ProtocolError) {
        if length < 12 {
            throw ProtocolError.malformed("length \(length) is below the minimum of 12")
        }
        if length + 4 > maxFrameSize {
            throw ProtocolError.oversized(length + 4, limit: maxFrameSize)
        }
        if let frameSize, length + 4 != frameSize {
            throw ProtocolError.malformed("length prefix says \(length + 4) bytes but the frame has \(frameSize)")
        }
    }

    /// Only the defined flag bits (`FINAL`) are set.
    @inline(__always)
    static func checkFlags(_ rawFlags: UInt16, of type: MessageType) throws(ProtocolError) {
        if rawFlags & ~FrameFlags.final.rawValue != 0 {
            throw ProtocolError.malformed("undefined flag bits 0x\(String(rawFlags, radix: 16)) in \(type.wireName)")
        }
    }
}

/// One frame: an operation id, flags and a message.
public struct Frame: Sendable, Equatable {
    public var operationID: UInt64
    public var flags: FrameFlags
    public var message: Message

    public init(operationID: UInt64, flags: FrameFlags = [], message: Message) {
        self.operationID = operationID
        self.flags = flags
        self.message = message
    }

    /// Appends the whole frame, length prefix included, to `bytes`.
    public func encode(into bytes: inout [UInt8]) {
        var w = ByteWriter(reservingCapacity: 256)
        encode(into: &w)
        w.withUnsafeBytes { bytes.append(contentsOf: $0) }
    }

    /// Appends the encoded frame to `writer` (a kept writer encodes without allocating).
    public func encode(into w: inout ByteWriter) {
        let start = w.beginFrame(type: message.type, flags: flags, operationID: operationID)
        message.encodePayload(to: &w)
        w.endFrame(startingAt: start)
    }

    /// The encoded frame.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(reservingCapacity: 256)  // most frames fit: no reallocation while encoding
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes exactly one frame occupying `bytes[range]` (one record or packet of the
    /// worker channel, or a frame the ``FrameDecoder`` cut out of a stream).
    public static func decode(_ bytes: [UInt8], range: Range<Int>? = nil, maxFrameSize: Int) throws(ProtocolError) -> Frame {
        let range = range ?? bytes.indices
        return try decode(ByteReader(bytes, range: range), frameSize: range.count, maxFrameSize: maxFrameSize)
    }

    /// Decodes exactly one frame of `frameSize` bytes that `r` reads (all of them, or all
    /// but a blob it holds apart).
    static func decode(_ reader: ByteReader, frameSize: Int, maxFrameSize: Int) throws(ProtocolError) -> Frame {
        if frameSize < ProtocolLimits.headerSize {
            throw ProtocolError.malformed("a frame needs at least \(ProtocolLimits.headerSize) bytes, got \(frameSize)")
        }
        var r = reader
        let length = Int(try r.u32("length"))
        try FrameHeaderRules.checkLength(length, frameSize: frameSize, maxFrameSize: maxFrameSize)
        let rawType = try r.u16("type")
        guard let type = MessageType(rawValue: rawType) else {
            throw ProtocolError.malformed("unknown message type 0x\(String(rawType, radix: 16, uppercase: true))")
        }
        let rawFlags = try r.u16("flags")
        try FrameHeaderRules.checkFlags(rawFlags, of: type)
        let operationID = try r.u64("operationID")
        let message = try Message.decode(type: type, from: &r)
        guard r.setAsideBlobWasRead else {
            throw ProtocolError.malformed("\(type.wireName): no binary data where its data was received")
        }
        return Frame(operationID: operationID, flags: FrameFlags(rawValue: rawFlags), message: message)
    }
}

/// Cuts frames out of a byte stream, never buffering more than one maximum-size frame
/// beyond what it has already handed out (when fed no more than ``readCapacity`` at a time).
///
/// Bytes come in through ``append(_:)-(UnsafeRawBufferPointer)`` or, without a copy, by
/// receiving straight into the decoder's storage with ``receive(upTo:_:)``.
public struct FrameDecoder: Sendable {
    /// The largest frame accepted, length prefix included.
    public var maxFrameSize: Int
    /// Storage of up to this many bytes is kept once everything is decoded (more is freed).
    public var keptStorage: Int
    /// Bytes `readIndex..<endIndex` are received and not yet decoded; bytes from `endIndex`
    /// on are space for the next receive. (Internal, not private: the in-place reader of
    /// ClientFastPath.swift takes frames from here too.)
    var buffer: [UInt8] = []
    var readIndex = 0
    var endIndex = 0

    /// The binary data of the result frame at `readIndex`, received into an array of its
    /// own (``setAsideResultData(minimumMissing:)``): the frame's bytes before the data are
    /// at `readIndex..<(readIndex + offset)` and the ones after it follow them in `buffer`.
    struct SetAsideData {
        /// The data; `bytes[0..<filled]` have arrived.
        var bytes: [UInt8]
        var filled: Int
        /// Where the data begins in the frame.
        let offset: Int
    }

    var setAside: SetAsideData?

    /// A decoder of frames of at most `maxFrameSize` bytes that keeps up to `keptStorage`
    /// bytes of storage between frames.
    public init(maxFrameSize: Int, keptStorage: Int = 262_144) {
        self.maxFrameSize = maxFrameSize
        self.keptStorage = keptStorage
    }

    /// True while part of a frame has arrived but not all of it.
    public var isMidFrame: Bool { readIndex < endIndex }

    /// Bytes of set-aside data still to come (0 when none is set aside): the first space a
    /// ``receive(upTo:_:)-(UnsafeMutableRawBufferPointer,UnsafeMutableRawBufferPointer)``
    /// offers.
    public var missingSetAsideByteCount: Int {
        guard let setAside else { return 0 }
        return setAside.bytes.count - setAside.filled
    }

    /// Bytes received and not yet decoded.
    public var bufferedByteCount: Int { endIndex - readIndex }

    /// How many bytes the caller may read next without exceeding one frame's worth of
    /// buffering (at least 1).
    public var readCapacity: Int {
        let pending = bufferedByteCount
        if pending >= 4 {
            let length = Int(peekLength())
            return max(1, min(length + 4, maxFrameSize) - pending + 65_536)
        }
        return 65_536
    }

    /// Appends received bytes: the missing bytes of set-aside data first (see
    /// ``setAsideResultData(minimumMissing:)``), the rest into the decoder's storage.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        let intoData = min(missingSetAsideByteCount, bytes.count)
        receive(upTo: max(1, bytes.count - intoData)) { data, space in
            if intoData > 0 { data.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<intoData])) }
            if intoData < bytes.count { space.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[intoData...])) }
            return bytes.count
        }
    }

    /// Appends received bytes.
    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Lets `receive` write up to `maxCount` bytes straight into the decoder's storage (no
    /// copy between a receive buffer and the decoder) and returns what `receive` returns:
    /// how many bytes it wrote, from the start of the space it was given. (Not generic over
    /// an error type: a generic call across modules instantiates metadata at every call; a
    /// caller whose receive can fail keeps the error itself and returns 0.) While
    /// set-aside data still misses bytes, they come first: use
    /// ``receive(upTo:_:)-(UnsafeMutableRawBufferPointer,UnsafeMutableRawBufferPointer)``.
    @discardableResult
    public mutating func receive(upTo maxCount: Int, _ receive: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        precondition(maxCount > 0, "receive needs room for at least one byte")
        precondition(missingSetAsideByteCount == 0, "set-aside data misses bytes: receive into both spaces")
        makeSpace(maxCount)
        let start = endIndex
        let written = buffer.withUnsafeMutableBytes { storage in
            receive(UnsafeMutableRawBufferPointer(rebasing: storage[start..<(start + maxCount)]))
        }
        precondition(written >= 0 && written <= maxCount, "receive wrote \(written) of at most \(maxCount) bytes")
        endIndex += written
        return written
    }

    /// Makes the binary data of a large `RECEIVE_RESULT` that has begun to arrive go into an
    /// array of its own, which the decoded frame's `.binary` then holds: a stream of output
    /// is copied once (by the kernel, into that array), not a second time out of the
    /// decoder's storage. Returns true when data is set aside (now or before).
    ///
    /// It applies when the next frame is a `RECEIVE_RESULT` with binary data that has not
    /// all arrived, whose length prefix is within ``maxFrameSize`` and leaves room for the
    /// data and the shortest tail, and of whose data at least `minimumMissing` bytes are
    /// still to come; otherwise nothing changes. The data's bytes received so far move to
    /// the new array. Receives then fill the array first
    /// (``receive(upTo:_:)-(UnsafeMutableRawBufferPointer,UnsafeMutableRawBufferPointer)``);
    /// ``next()`` decodes the frame, with every check it always makes, once the rest has
    /// arrived. Only `RECEIVE_RESULT` is set aside: a decoder used with ``peekFrame()`` and
    /// ``takeFrame(into:)`` never calls this.
    public mutating func setAsideResultData(minimumMissing: Int) -> Bool {
        if setAside != nil { return true }
        let pending = bufferedByteCount
        guard pending >= ProtocolLimits.headerSize + 5 else { return false }
        let frameSize = Int(peekLength()) + 4
        guard frameSize >= ProtocolLimits.headerSize, frameSize <= maxFrameSize, pending < frameSize else { return false }
        let start = readIndex
        let found = buffer.withUnsafeBytes { storage in
            ResultFrames.binaryDataRange(inResultHead: UnsafeRawBufferPointer(rebasing: storage[start..<(start + pending)]), type: .receiveResult)
        }
        // The data and the shortest tail (no command state, an exit code) fit in the frame.
        guard let data = found, data.upperBound + 5 <= frameSize, data.upperBound - pending >= max(minimumMissing, 1) else { return false }
        let arrived = pending - data.lowerBound
        let bytes = buffer.withUnsafeBytes { storage in
            [UInt8](unsafeUninitializedCapacity: data.count) { array, initialized in
                if arrived > 0 {
                    UnsafeMutableRawBufferPointer(array).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: storage[(start + data.lowerBound)..<(start + pending)]))
                }
                initialized = data.count  // the rest is written by receives before it is read
            }
        }
        setAside = SetAsideData(bytes: bytes, filled: arrived, offset: data.lowerBound)
        endIndex = start + data.lowerBound
        return true
    }

    /// ``receive(upTo:_:)-(UnsafeMutableRawBufferPointer)`` with two spaces: first the
    /// missing bytes of the set-aside data (empty when none is missing), then up to
    /// `maxCount` bytes of the decoder's storage. `receive` fills them in that order (a
    /// scattering read) and returns how many bytes it wrote in all.
    @discardableResult
    public mutating func receive(
        upTo maxCount: Int, _ receive: (UnsafeMutableRawBufferPointer, UnsafeMutableRawBufferPointer) -> Int
    ) -> Int {
        guard var aside = setAside, aside.filled < aside.bytes.count else {
            return self.receive(upTo: maxCount) { space in receive(UnsafeMutableRawBufferPointer(start: nil, count: 0), space) }
        }
        precondition(maxCount > 0, "receive needs room for at least one byte")
        makeSpace(maxCount)
        setAside = nil  // the array is written through its only reference, not copied
        let missing = aside.bytes.count - aside.filled
        let filled = aside.filled
        let start = endIndex
        let written = aside.bytes.withUnsafeMutableBytes { data in
            buffer.withUnsafeMutableBytes { storage in
                receive(UnsafeMutableRawBufferPointer(rebasing: data[filled...]),
                        UnsafeMutableRawBufferPointer(rebasing: storage[start..<(start + maxCount)]))
            }
        }
        precondition(written >= 0 && written <= missing + maxCount, "receive wrote \(written) of at most \(missing + maxCount) bytes")
        let intoData = min(written, missing)
        aside.filled += intoData
        endIndex += written - intoData
        setAside = aside
        return written
    }

    /// Makes room for `count` more bytes after `endIndex`: moves the undecoded bytes to the
    /// front when the space behind them is too short, and grows the storage (to at least
    /// twice its size) only when that is not enough either.
    private mutating func makeSpace(_ count: Int) {
        if readIndex == endIndex {
            readIndex = 0
            endIndex = 0
        }
        if buffer.count - endIndex >= count { return }
        let pending = endIndex - readIndex
        if readIndex > 0 {
            let from = readIndex
            buffer.withUnsafeMutableBytes { storage in
                let base = storage.baseAddress!
                base.copyMemory(from: base + from, byteCount: pending)
            }
            readIndex = 0
            endIndex = pending
            if buffer.count - endIndex >= count { return }
        }
        // New storage with the pending bytes in front. The space behind them is left
        // uninitialized (bytes, written by a receive before they are ever read): filling
        // megabytes element by element took seconds per growth in debug builds.
        let size = max(pending + count, 2 * buffer.count)
        buffer = buffer.withUnsafeBytes { old in
            [UInt8](unsafeUninitializedCapacity: size) { storage, initialized in
                if pending > 0 {
                    UnsafeMutableRawBufferPointer(storage).copyMemory(from: UnsafeRawBufferPointer(rebasing: old[0..<pending]))
                }
                initialized = size
            }
        }
    }

    private func peekLength() -> UInt32 {
        UInt32(buffer[readIndex]) | UInt32(buffer[readIndex + 1]) << 8
            | UInt32(buffer[readIndex + 2]) << 16 | UInt32(buffer[readIndex + 3]) << 24
    }

    /// The size of the next frame (length prefix included) when all of it has arrived,
    /// else nil. Throws as soon as a length prefix is out of bounds.
    /// With data set aside, the size is what the frame takes in `buffer`: all but the data.
    func completeFrameSize() throws(ProtocolError) -> Int? {
        guard bufferedByteCount >= 4 else { return nil }
        let length = Int(peekLength())
        try FrameHeaderRules.checkLength(length, maxFrameSize: maxFrameSize)
        var size = length + 4
        if let setAside {
            guard setAside.filled == setAside.bytes.count else { return nil }
            size -= setAside.bytes.count
        }
        guard bufferedByteCount >= size else { return nil }
        return size
    }

    /// The type and size (length prefix included) of the next frame when all of it has
    /// arrived; nil when more bytes are needed. Throws, like ``next()``, as soon as a
    /// length prefix is out of bounds.
    ///
    /// Mutating only so that a decoder stored in a class is read in place, not copied.
    public mutating func peekFrame() throws(ProtocolError) -> (type: UInt16, size: Int)? {
        precondition(setAside == nil, "peekFrame and takeFrame do not mix with setAsideResultData")
        guard let size = try completeFrameSize() else { return nil }
        return (peekType(), size)
    }

    /// The type field of the next frame (call once ``completeFrameSize()`` found it whole).
    func peekType() -> UInt16 {
        UInt16(buffer[readIndex + 4]) | UInt16(buffer[readIndex + 5]) << 8
    }

    /// Moves past the next `size` bytes (a whole frame), releasing the storage when it
    /// held more than ``keptStorage`` and everything is decoded.
    mutating func consume(_ size: Int) {
        readIndex += size
        if readIndex == endIndex {
            readIndex = 0
            endIndex = 0
            if buffer.count > keptStorage { buffer = [] }
        }
    }

    /// The next complete frame, or nil when more bytes are needed. Throws as soon as a
    /// length prefix is out of bounds, before the body arrives.
    public mutating func next() throws(ProtocolError) -> Frame? {
        guard let size = try completeFrameSize() else { return nil }
        let range = readIndex..<(readIndex + size)
        let frame: Frame
        if let aside = setAside {
            setAside = nil
            let reader = ByteReader(buffer, range: range, setAside: aside.bytes, at: readIndex + aside.offset)
            frame = try Frame.decode(reader, frameSize: size + aside.bytes.count, maxFrameSize: maxFrameSize)
        } else {
            frame = try Frame.decode(buffer, range: range, maxFrameSize: maxFrameSize)
        }
        consume(size)
        return frame
    }

    /// Copies the next frame, whose size ``peekFrame()`` returned, into `destination`
    /// (exactly that size) and moves past it, undecoded: the caller reads it in place.
    public mutating func takeFrame(into destination: UnsafeMutableRawBufferPointer) {
        let start = readIndex
        precondition(destination.count >= 4 && endIndex - start >= destination.count && Int(peekLength()) + 4 == destination.count,
                     "takeFrame needs the size peekFrame returned")
        buffer.withUnsafeBytes { storage in
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[start..<(start + destination.count)]))
        }
        consume(destination.count)
    }
}

extension ByteWriter {
    /// Writes a frame header (PROTOCOL.md §3) with a length prefix to be patched by
    /// ``endFrame(startingAt:)`` once the payload is written; returns where the frame starts.
    /// Every encoder of whole frames goes through this pair.
    @inline(__always)
    mutating func beginFrame(type: MessageType, flags: FrameFlags = [], operationID: UInt64) -> Int {
        let start = count
        u32(0)
        u16(type.rawValue)
        u16(flags.rawValue)
        u64(operationID)
        return start
    }

    /// Sets the length prefix of the frame begun at `start` to cover everything written since.
    @inline(__always)
    mutating func endFrame(startingAt start: Int) {
        patchU32(at: start, UInt32(count - start - 4))
    }
}
