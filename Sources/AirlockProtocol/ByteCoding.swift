/// Little-endian primitive encoding of the wire protocol (PROTOCOL.md §4).

/// Appends protocol fields to a byte array.
public struct ByteWriter: Sendable {
    /// The bytes written so far.
    public var bytes: [UInt8]

    /// Creates a writer, optionally reserving capacity.
    public init(reservingCapacity capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Creates a writer that appends to existing bytes.
    public init(appendingTo bytes: [UInt8]) {
        self.bytes = bytes
    }

    @inlinable public mutating func u8(_ value: UInt8) { bytes.append(value) }

    @inlinable public mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    }

    // Byte by byte: four appends cost less than append(contentsOf:) of a raw buffer,
    // which goes through the generic sequence path (about 15% of encoding a small frame).
    @inlinable public mutating func u32(_ value: UInt32) {
        bytes.append(UInt8(truncatingIfNeeded: value))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value >> 16))
        bytes.append(UInt8(truncatingIfNeeded: value >> 24))
    }

    @inlinable public mutating func u64(_ value: UInt64) {
        u32(UInt32(truncatingIfNeeded: value))
        u32(UInt32(truncatingIfNeeded: value >> 32))
    }

    @inlinable public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    /// A `str`: u32 byte count and UTF-8 bytes.
    public mutating func str(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            u32(UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
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
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    /// A `bytes` field from a raw buffer.
    public mutating func blob(_ value: UnsafeRawBufferPointer) {
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    /// A `list<T>`: u32 count, then each element.
    public mutating func list<T>(_ values: [T], _ element: (inout ByteWriter, T) -> Void) {
        u32(UInt32(values.count))
        for value in values { element(&self, value) }
    }

    /// Overwrites four bytes at `offset` with a little-endian u32.
    @inlinable public mutating func patchU32(at offset: Int, _ value: UInt32) {
        bytes[offset] = UInt8(truncatingIfNeeded: value)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
        bytes[offset + 2] = UInt8(truncatingIfNeeded: value >> 16)
        bytes[offset + 3] = UInt8(truncatingIfNeeded: value >> 24)
    }
}

/// Reads protocol fields from a byte array, strictly: every read is bounds-checked and
/// every malformed value is a ``ProtocolError``.
public struct ByteReader: Sendable {
    @usableFromInline let bytes: [UInt8]
    /// The index of the next unread byte.
    public private(set) var position: Int
    @usableFromInline let end: Int

    /// Reads `bytes[range]`.
    public init(_ bytes: [UInt8], range: Range<Int>? = nil) {
        self.bytes = bytes
        let range = range ?? bytes.indices
        self.position = range.lowerBound
        self.end = range.upperBound
    }

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
