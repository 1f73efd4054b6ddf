/// Little-endian primitive encoding of the wire protocol (PROTOCOL.md §4).

/// Appends protocol fields to a growable buffer of its own.
///
/// The bytes live in memory the writer owns (not an `Array`): appending a field is a
/// capacity check and a store, with none of `Array.append`'s per-call uniqueness check,
/// which made encoding cost several times the bytes it wrote. A writer kept and reused
/// (``removeAll()``) encodes frames without allocating. It is noncopyable: the storage has
/// exactly one owner, freed when the writer ends.
public struct ByteWriter: ~Copyable, @unchecked Sendable {
    @usableFromInline var base: UnsafeMutableRawPointer
    @usableFromInline var capacity: Int
    @usableFromInline var written: Int
    /// The number of bytes written so far.
    public var count: Int { written }

    /// Creates an empty writer with room for `capacity` bytes before it grows.
    public init(reservingCapacity capacity: Int = 64) {
        let capacity = max(capacity, 16)
        self.base = .allocate(byteCount: capacity, alignment: 16)
        self.capacity = capacity
        self.written = 0
    }

    deinit { base.deallocate() }

    /// A copy of the bytes written so far.
    public var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: base, count: written)) }

    /// Calls `body` with the bytes written so far (valid only during the call).
    public func withUnsafeBytes<Result, Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Result) throws(Failure) -> Result {
        try body(UnsafeRawBufferPointer(start: base, count: written))
    }

    /// Forgets what was written, keeping the memory unless it is larger than
    /// `keepingCapacity` bytes (it is then replaced by a small block).
    public mutating func removeAll(keepingCapacity limit: Int = .max) {
        written = 0
        if capacity > limit {
            base.deallocate()
            capacity = min(max(limit, 16), 256)
            base = .allocate(byteCount: capacity, alignment: 16)
        }
    }

    /// Removes the first `count` bytes, moving the rest to the front.
    public mutating func removeFirst(_ count: Int) {
        precondition(count >= 0 && count <= written, "removeFirst beyond the written bytes")
        if count < written { base.copyMemory(from: base + count, byteCount: written - count) }
        written -= count
    }

    /// Makes room for `extra` more bytes.
    @inlinable @inline(__always)
    mutating func reserve(_ extra: Int) {
        if extra > capacity &- written { grow(extra) }
    }

    @usableFromInline @inline(never)
    mutating func grow(_ extra: Int) {
        let needed = written + extra
        precondition(needed >= written, "ByteWriter overflow")
        var newCapacity = capacity
        while newCapacity < needed { newCapacity = newCapacity <= Int.max / 2 ? newCapacity * 2 : needed }
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newBase.copyMemory(from: base, byteCount: written)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inlinable @inline(__always)
    mutating func store<T: FixedWidthInteger>(_ value: T) {
        reserve(MemoryLayout<T>.size)
        (base + written).storeBytes(of: value.littleEndian, as: T.self)
        written &+= MemoryLayout<T>.size
    }

    @inlinable public mutating func u8(_ value: UInt8) { store(value) }
    @inlinable public mutating func u16(_ value: UInt16) { store(value) }
    @inlinable public mutating func u32(_ value: UInt32) { store(value) }
    @inlinable public mutating func u64(_ value: UInt64) { store(value) }
    @inlinable public mutating func bool(_ value: Bool) { store(UInt8(value ? 1 : 0)) }

    /// Appends raw bytes.
    public mutating func append(_ raw: UnsafeRawBufferPointer) {
        guard let source = raw.baseAddress, raw.count > 0 else { return }
        reserve(raw.count)
        (base + written).copyMemory(from: source, byteCount: raw.count)
        written += raw.count
    }

    /// A `str`: u32 byte count and UTF-8 bytes.
    public mutating func str(_ value: String) {
        // Same layout as a `bytes` field. Read in place (native strings, small ones
        // included, are contiguous UTF-8); the mutating `withUTF8` would copy the string
        // first, a retain and a release per field.
        let done: Void? = value.utf8.withContiguousStorageIfAvailable { blob(UnsafeRawBufferPointer($0)) }
        if done == nil {
            var copy = value
            copy.withUTF8 { blob(UnsafeRawBufferPointer($0)) }
        }
    }

    /// An `optstr`: a presence byte, then the string when present.
    public mutating func optstr(_ value: String?) {
        if let value {
            u8(1)
            str(value)
        } else {
            u8(0)
        }
    }

    /// A `bytes` field: u32 count and the raw bytes.
    public mutating func blob(_ value: [UInt8]) {
        value.withUnsafeBytes { blob($0) }
    }

    /// A `bytes` field from a raw buffer.
    public mutating func blob(_ value: UnsafeRawBufferPointer) {
        reserve(4 + value.count)
        u32(UInt32(value.count))
        append(value)
    }

    /// A `list<T>`: u32 count, then each element.
    public mutating func list<T>(_ values: [T], _ element: (inout ByteWriter, T) -> Void) {
        u32(UInt32(values.count))
        for value in values { element(&self, value) }
    }

    /// Overwrites four bytes at `offset` with a little-endian u32.
    @inlinable public mutating func patchU32(at offset: Int, _ value: UInt32) {
        precondition(offset >= 0 && offset <= written - 4, "patchU32 outside the written bytes")
        (base + offset).storeBytes(of: value.littleEndian, as: UInt32.self)
    }
}

/// Reads protocol fields from a byte array, strictly: every read is bounds-checked and
/// every malformed value is a ``ProtocolError``.
public struct ByteReader: Sendable {
    @usableFromInline let bytes: [UInt8]
    /// The index of the next unread byte.
    public private(set) var position: Int
    @usableFromInline let end: Int
    /// Where the bytes of a blob held outside `bytes` would begin (-1: none). A
    /// ``FrameDecoder`` receives the data of a large result into an array of its own; the
    /// frame's other bytes are in `bytes`, the ones after the data right behind the ones
    /// before it.
    var setAsidePosition = -1
    /// That blob, handed out (not copied) by ``blob(_:)`` when it reads at `setAsidePosition`.
    var setAsideBlob: [UInt8] = []

    /// Reads `bytes[range]`.
    public init(_ bytes: [UInt8], range: Range<Int>? = nil) {
        self.bytes = bytes
        let range = range ?? bytes.indices
        self.position = range.lowerBound
        self.end = range.upperBound
    }

    /// Reads `bytes[range]`, in which the blob whose bytes would begin at `position` is
    /// not: it is `blob`.
    init(_ bytes: [UInt8], range: Range<Int>, setAside blob: [UInt8], at position: Int) {
        self.init(bytes, range: range)
        setAsidePosition = position
        setAsideBlob = blob
    }

    /// True once the blob set aside was read (or when there was none).
    var setAsideBlobWasRead: Bool { setAsidePosition < 0 }

    /// Bytes not yet read.
    public var remaining: Int { end - position }

    /// Fails unless every byte was consumed.
    public func expectEnd(_ what: @autoclosure () -> String) throws(ProtocolError) {
        if position != end {
            throw ProtocolError.malformed("\(what()): \(end - position) unexpected trailing byte(s)")
        }
    }

    @inline(__always)
    mutating func need(_ count: Int, _ field: StaticString) throws(ProtocolError) {
        if count > end - position {
            throw ProtocolError.malformed("truncated field \(field): needs \(count) byte(s), \(end - position) left")
        }
    }

    public mutating func u8(_ field: StaticString = "u8") throws(ProtocolError) -> UInt8 {
        try need(1, field)
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func u16(_ field: StaticString = "u16") throws(ProtocolError) -> UInt16 {
        try need(2, field)
        defer { position += 2 }
        return UInt16(bytes[position]) | UInt16(bytes[position + 1]) << 8
    }

    public mutating func u32(_ field: StaticString = "u32") throws(ProtocolError) -> UInt32 {
        try need(4, field)
        defer { position += 4 }
        let offset = position
        return bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    }

    public mutating func u64(_ field: StaticString = "u64") throws(ProtocolError) -> UInt64 {
        try need(8, field)
        defer { position += 8 }
        let offset = position
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    }

    public mutating func bool(_ field: StaticString = "bool") throws(ProtocolError) -> Bool {
        switch try u8(field) {
        case 0: return false
        case 1: return true
        case let other: throw ProtocolError.malformed("field \(field): boolean must be 0 or 1, got \(other)")
        }
    }

    public mutating func str(_ field: StaticString = "str") throws(ProtocolError) -> String {
        let count = Int(try u32(field))
        try need(count, field)
        let start = position
        position += count
        if count == 0 { return "" }
        // Not String(validating:as:): it runs the standard library's generic validator,
        // which looks up generic metadata on every call (a third of the time to decode a
        // small frame). String(validatingCString:) takes the non-generic UTF-8 path with
        // the same strictness; it stops at the first NUL, so a string holding a NUL comes
        // back shorter than its byte count.
        let decoded = bytes.withUnsafeBytes { frame in
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: count + 1) { cString -> String? in
                UnsafeMutableRawBufferPointer(cString).copyMemory(from: UnsafeRawBufferPointer(rebasing: frame[start..<(start + count)]))
                cString[count] = 0
                return String(validatingCString: cString.baseAddress!)
            }
        }
        guard let string = decoded else {
            throw ProtocolError.malformed("field \(field): string is not valid UTF-8")
        }
        if string.utf8.count != count {
            throw ProtocolError.malformed("field \(field): string contains NUL")
        }
        return string
    }

    public mutating func optstr(_ field: StaticString = "optstr") throws(ProtocolError) -> String? {
        switch try u8(field) {
        case 0: return nil
        case 1: return try str(field)
        case let other: throw ProtocolError.malformed("field \(field): presence byte must be 0 or 1, got \(other)")
        }
    }

    public mutating func blob(_ field: StaticString = "bytes") throws(ProtocolError) -> [UInt8] {
        let count = Int(try u32(field))
        if position == setAsidePosition {
            guard count == setAsideBlob.count else {
                throw ProtocolError.malformed("field \(field): length \(count) is not the \(setAsideBlob.count) bytes received for it")
            }
            setAsidePosition = -1
            defer { setAsideBlob = [] }
            return setAsideBlob
        }
        try need(count, field)
        defer { position += count }
        return Array(bytes[position..<(position + count)])
    }

    /// A `list<T>` whose elements take at least `minimumElementSize` bytes each, so a
    /// hostile count cannot make the reader allocate beyond the frame.
    public mutating func list<T>(
        _ field: StaticString, minimumElementSize: Int,
        _ element: (inout ByteReader) throws(ProtocolError) -> T
    ) throws(ProtocolError) -> [T] {
        let count = Int(try u32(field))
        if count > remaining / max(minimumElementSize, 1) {
            throw ProtocolError.malformed("field \(field): list count \(count) exceeds the bytes left (\(remaining))")
        }
        var values: [T] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try element(&self)) }
        return values
    }

    public mutating func strings(_ field: StaticString) throws(ProtocolError) -> [String] {
        try list(field, minimumElementSize: 4) { (r: inout ByteReader) throws(ProtocolError) in try r.str(field) }
    }
}

extension ByteWriter {
    public mutating func strings(_ values: [String]) {
        list(values) { $0.str($1) }
    }
}
