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
              WireCursor.load16(packet, 4) == MessageType.workerResult.rawValue else { return nil }
        var r = try WireCursor(frame: packet, type: .workerResult, maxFrameSize: maxFrameSize)
        _ = try r.u32("flags")
        _ = try r.optstr("stream")
        var dataByteCount: UInt32 = 0
        switch try r.u8("data.kind") {
        case 0:
            break
        case 1:
            return nil
        case 2:
            dataByteCount = UInt32(try r.blob("data.binary").count)
        case 4:
            _ = try r.u32("data.dword")
        case let kind:
            throw ProtocolError.malformed("field data.kind: unknown WSMAN_DATA kind \(kind)")
        }
        _ = try r.optstr("commandState")
        _ = try r.u32("exitCode")
        try r.expectEnd(.workerResult)
        return Checked(operationID: WireCursor.load64(packet, 8), dataByteCount: dataByteCount)
    }

    /// Where the binary data of a result frame of type `type` (`W_RESULT` or
    /// `RECEIVE_RESULT`) lies, read from the frame's first bytes only (`head`; the frame
    /// goes on beyond it): the range, in offsets of the frame, of the data bytes. Nil when
    /// `head` does not begin a frame of that type carrying binary data, or ends before the
    /// data begins. This checks nothing else: the whole frame is still checked or decoded
    /// (``checkWorkerResult(_:maxFrameSize:)`` never reads the data bytes, so the
    /// supervisor may leave them where they are, in a worker's ring, and check a copy of the
    /// rest; a ``FrameDecoder`` may receive them into an array of their own).
    public static func binaryDataRange(inResultHead head: UnsafeRawBufferPointer, type: MessageType = .workerResult) -> Range<Int>? {
        guard head.count >= ProtocolLimits.headerSize + 5,
              WireCursor.load16(head, 4) == type.rawValue else { return nil }
        var position = ProtocolLimits.headerSize + 4  // past the header and the result flags
        switch head[position] {
        case 0:
            position += 1
        case 1:
            guard head.count >= position + 5 else { return nil }
            position += 5 + Int(WireCursor.load32(head, position + 1))
        default:
            return nil
        }
        guard head.count >= position + 5, head[position] == 2 else { return nil }
        let start = position + 5
        return start..<(start + Int(WireCursor.load32(head, position + 1)))
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
        frame.withUnsafeMutableBytes { raw in
            rewriteHeader(UnsafeMutableRawBufferPointer(rebasing: raw[offset...]), type: type, flags: flags, operationID: operationID)
        }
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
        head.patchU32(at: 0, UInt32(head.count + byteCount + tail.count - 4))
        return (head.bytes, tail.bytes)
    }
}
