/// The output path without copies: `W_RESULT` and `RECEIVE_RESULT` share one payload
/// encoding (PROTOCOL.md §5), so a worker can send a result as its header, the plug-in's
/// bytes and a short tail (one gathering send), and the supervisor can check a `W_RESULT`
/// packet in place and relay it to the client under a rewritten header.
public enum ResultFrames {
    /// What ``checkWorkerResult(_:maxFrameSize:)`` learned about a valid `W_RESULT`.
    public struct Checked: Sendable, Equatable {
        /// The worker's operation id.
        public var operationID: UInt64
        /// Bytes of result data (the flow-control credit it takes): the binary data's
        /// length, 0 for `none` and `dword`.
        public var dataByteCount: UInt32
    }

    /// Checks one `W_RESULT` packet exactly as ``Frame/decode(_:range:maxFrameSize:)``
    /// would, without copying it. Returns nil when the packet is another message type, or
    /// a result carrying text (the caller decodes those the usual way).
    public static func checkWorkerResult(_ packet: UnsafeRawBufferPointer, maxFrameSize: Int) throws(ProtocolError) -> Checked? {
        guard packet.count >= ProtocolLimits.headerSize,
              load16(packet, 4) == MessageType.workerResult.rawValue else { return nil }
        let length = Int(load32(packet, 0))
        if length < 12 { throw ProtocolError.malformed("length \(length) is below the minimum of 12") }
        if length + 4 > maxFrameSize { throw ProtocolError.oversized(length + 4, limit: maxFrameSize) }
        if length + 4 != packet.count {
            throw ProtocolError.malformed("length prefix says \(length + 4) bytes but the frame has \(packet.count)")
        }
        let rawFlags = load16(packet, 6)
        if rawFlags & ~FrameFlags.final.rawValue != 0 {
            throw ProtocolError.malformed("undefined flag bits 0x\(String(rawFlags, radix: 16)) in W_RESULT")
        }
        var position = ProtocolLimits.headerSize
        func need(_ count: Int, _ field: StaticString) throws(ProtocolError) {
            if count > packet.count - position {
                throw ProtocolError.malformed("truncated field \(field): needs \(count) byte(s), \(packet.count - position) left")
            }
        }
        func optionalString(_ field: StaticString) throws(ProtocolError) {
            try need(1, field)
            let presence = packet[position]
            position += 1
            switch presence {
            case 0: return
            case 1: break
            default: throw ProtocolError.malformed("field \(field): presence byte must be 0 or 1, got \(presence)")
            }
            try need(4, field)
            let count = Int(load32(packet, position))
            position += 4
            try need(count, field)
            try UTF8Check.check(UnsafeRawBufferPointer(rebasing: packet[position..<(position + count)]), field)
            position += count
        }
        try need(4, "flags")
        position += 4
        try optionalString("stream")
        try need(1, "data.kind")
        let kind = packet[position]
        position += 1
        var dataByteCount: UInt32 = 0
        switch kind {
        case 0:
            break
        case 1:
            return nil
        case 2:
            try need(4, "data.binary")
            dataByteCount = load32(packet, position)
            position += 4
            try need(Int(dataByteCount), "data.binary")
            position += Int(dataByteCount)
        case 4:
            try need(4, "data.dword")
            position += 4
        default:
            throw ProtocolError.malformed("field data.kind: unknown WSMAN_DATA kind \(kind)")
        }
        try optionalString("commandState")
        try need(4, "exitCode")
        position += 4
        if position != packet.count {
            throw ProtocolError.malformed("W_RESULT: \(packet.count - position) unexpected trailing byte(s)")
        }
        return Checked(operationID: load64(packet, 8), dataByteCount: dataByteCount)
    }

    /// Overwrites, in place, the type, flags and operation id of the encoded frame that
    /// `frame` holds (the length prefix and payload stay).
    public static func rewriteHeader(_ frame: UnsafeMutableRawBufferPointer, type: MessageType, flags: FrameFlags = [], operationID: UInt64) {
        precondition(frame.count >= ProtocolLimits.headerSize)
        frame.storeBytes(of: type.rawValue.littleEndian, toByteOffset: 4, as: UInt16.self)
        frame.storeBytes(of: flags.rawValue.littleEndian, toByteOffset: 6, as: UInt16.self)
        frame.storeBytes(of: operationID.littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    /// Overwrites the type, flags and operation id of the encoded frame at
    /// `frame[offset...]` (the length prefix and payload stay).
    public static func rewriteHeader(_ frame: inout [UInt8], at offset: Int, type: MessageType, flags: FrameFlags = [], operationID: UInt64) {
        var w = ByteWriter(reservingCapacity: 12)
        w.u16(type.rawValue)
        w.u16(flags.rawValue)
        w.u64(operationID)
        for index in 0..<12 { frame[offset + 4 + index] = w.bytes[index] }
    }

    /// The bytes around `byteCount` bytes of binary data in a result frame of type `type`
    /// (`W_RESULT` or `RECEIVE_RESULT`): `head`, the data, then `tail` is the whole frame,
    /// byte for byte what ``Frame/encode(into:)`` writes for `.binary` data.
    public static func binaryResultParts(
        type: MessageType, operationID: UInt64, resultFlags: UInt32, stream: String?, byteCount: Int,
        commandState: String?, exitCode: UInt32
    ) -> (head: [UInt8], tail: [UInt8]) {
        var head = ByteWriter(reservingCapacity: 64)
        head.u32(0)
        head.u16(type.rawValue)
        head.u16(0)
        head.u64(operationID)
        head.u32(resultFlags)
        head.optstr(stream)
        head.u8(2)
        head.u32(UInt32(byteCount))
        var tail = ByteWriter(reservingCapacity: 16)
        tail.optstr(commandState)
        tail.u32(exitCode)
        head.patchU32(at: 0, UInt32(head.bytes.count + byteCount + tail.bytes.count - 4))
        return (head.bytes, tail.bytes)
    }

    // MARK: - Helpers

    @inline(__always)
    private static func load16(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    private static func load32(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    private static func load64(_ buffer: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}
