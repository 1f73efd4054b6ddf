/// `W_COMPLETE` (PROTOCOL.md §5.5) written straight into a caller's buffer: the frame a
/// worker sends once per operation, without building a ``Message`` and an array for it.
public enum CompletionFrame {
    /// The size of a `W_COMPLETE` whose extendedInformation has `informationBytes` bytes
    /// of UTF-8 (`nil`: absent).
    public static func size(informationBytes: Int?) -> Int {
        ProtocolLimits.headerSize + 4 + 1 + (informationBytes.map { 4 + $0 } ?? 0)
    }

    /// Writes a `W_COMPLETE` with the `FINAL` flag into `buffer` (at least ``size(informationBytes:)``
    /// bytes) and returns its size: byte for byte what ``Frame/encode(into:)`` writes.
    /// `information` must be valid UTF-8 without NUL, as every `str` field.
    public static func write(
        operationID: UInt64, errorCode: UInt32, information: UnsafeRawBufferPointer?, into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        let size = size(informationBytes: information?.count)
        precondition(buffer.count >= size, "W_COMPLETE needs \(size) bytes")
        buffer.storeBytes(of: UInt32(size - 4).littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: MessageType.workerComplete.rawValue.littleEndian, toByteOffset: 4, as: UInt16.self)
        buffer.storeBytes(of: FrameFlags.final.rawValue.littleEndian, toByteOffset: 6, as: UInt16.self)
        buffer.storeBytes(of: operationID.littleEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: errorCode.littleEndian, toByteOffset: 16, as: UInt32.self)
        guard let information else {
            buffer[20] = 0
            return size
        }
        buffer[20] = 1
        buffer.storeBytes(of: UInt32(information.count).littleEndian, toByteOffset: 21, as: UInt32.self)
        if information.count > 0 {
            UnsafeMutableRawBufferPointer(rebasing: buffer[25...]).copyMemory(from: information)
        }
        return size
    }

    /// Reads one `W_COMPLETE` packet in place, with exactly the checks of
    /// ``Frame/decode(_:range:maxFrameSize:)``. Returns nil when the packet is another
    /// message type (the caller decodes those the usual way).
    public static func readWorkerComplete(
        _ packet: UnsafeRawBufferPointer, maxFrameSize: Int
    ) throws(ProtocolError) -> (operationID: UInt64, completion: WorkerComplete)? {
        guard packet.count >= ProtocolLimits.headerSize,
              WireCursor.load16(packet, 4) == MessageType.workerComplete.rawValue else { return nil }
        var r = try WireCursor(frame: packet, type: .workerComplete, maxFrameSize: maxFrameSize)
        let errorCode = try r.u32("errorCode")
        let information = try r.optstr("extendedInformation")
        try r.expectEnd(.workerComplete)
        return (WireCursor.load64(packet, 8), WorkerComplete(errorCode: errorCode, extendedInformation: information?.string))
    }

    /// Appends an `OPERATION_COMPLETE` with the `FINAL` flag (PROTOCOL.md §5.3) without
    /// building a ``Message``: byte for byte what ``Frame/encode(into:)-([UInt8])`` writes for
    /// `.operationComplete(OperationComplete(errorCode:extendedInformation:message:))`.
    public static func encodeOperationComplete(
        operationID: UInt64, errorCode: UInt32, extendedInformation: String?, message: String, into w: inout ByteWriter
    ) {
        let start = w.beginFrame(type: .operationComplete, flags: .final, operationID: operationID)
        w.u32(errorCode)
        w.optstr(extendedInformation)
        w.str(message)
        w.endFrame(startingAt: start)
    }
}
