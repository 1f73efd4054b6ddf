/// The client's blocking round trip without a ``Frame`` or ``Message`` on either side: the
/// requests it sends most are encoded straight into a kept ``ByteWriter``, and the answer
/// that ends them (an `OPERATION_COMPLETE` with no error) is recognised and checked in place
/// in a ``FrameDecoder``'s bytes.
public enum ClientFrames {
    /// Appends a whole `SIGNAL` frame (PROTOCOL.md §5.2) to `writer`: byte for byte what
    /// ``Frame/encode(into:)-(ByteWriter)`` writes for `.signal(SignalRequest(...))`.
    public static func encodeSignal(
        into writer: inout ByteWriter, operationID: UInt64, shellID: UInt64, commandID: UInt64, timeoutMs: UInt32, code: String
    ) {
        let start = writer.beginFrame(type: .signal, operationID: operationID)
        writer.u64(shellID)
        writer.u64(commandID)
        writer.u32(timeoutMs)
        writer.str(code)
        writer.endFrame(startingAt: start)
    }

    /// Appends a whole `SEND` frame (PROTOCOL.md §5.2) to `writer`: byte for byte what
    /// ``Frame/encode(into:)-(ByteWriter)`` writes for `.send(SendInput(...))`.
    public static func encodeSend(
        into writer: inout ByteWriter, operationID: UInt64, shellID: UInt64, commandID: UInt64, timeoutMs: UInt32,
        stream: String, endOfStream: Bool, data: [UInt8]
    ) {
        let start = writer.beginFrame(type: .send, operationID: operationID)
        writer.u64(shellID)
        writer.u64(commandID)
        writer.u32(timeoutMs)
        writer.str(stream)
        writer.bool(endOfStream)
        writer.blob(data)
        writer.endFrame(startingAt: start)
    }

}

extension FrameDecoder {
    /// Consumes the next frame, and returns true, when it is whole and is an
    /// `OPERATION_COMPLETE` with the `FINAL` flag and error code 0 (`NO_ERROR`) for
    /// `operationID` that passes every check ``next()`` would make (header rules, UTF-8 of
    /// its strings, no trailing bytes). Nothing is copied and no string is made.
    ///
    /// Otherwise (no whole frame yet, another frame, an error code, or a frame that breaks
    /// a rule) it consumes nothing and returns false: ``next()`` then decodes that frame, or
    /// throws the very error it always throws for it.
    public mutating func takeSuccessfulCompletion(of operationID: UInt64) -> Bool {
        let pending = endIndex - readIndex
        guard pending >= ProtocolLimits.headerSize else { return false }
        let start = readIndex
        let limit = maxFrameSize
        let frameSize = buffer.withUnsafeBytes { storage -> Int in
            let available = UnsafeRawBufferPointer(rebasing: storage[start..<(start + pending)])
            let length = Int(WireCursor.load32(available, 0))
            guard length >= 12, length + 4 <= pending,
                  WireCursor.load16(available, 4) == MessageType.operationComplete.rawValue,
                  WireCursor.load16(available, 6) == FrameFlags.final.rawValue,
                  WireCursor.load64(available, 8) == operationID else { return 0 }
            let frame = UnsafeRawBufferPointer(rebasing: available[0..<(length + 4)])
            do throws(ProtocolError) {
                var r = try WireCursor(frame: frame, type: .operationComplete, maxFrameSize: limit)
                guard try r.u32("errorCode") == WSManError.noError else { return 0 }
                _ = try r.optstr("extendedInformation")
                _ = try r.str("message")
                try r.expectEnd(.operationComplete)
            } catch {
                return 0
            }
            return length + 4
        }
        guard frameSize > 0 else { return false }
        consume(frameSize)
        return true
    }
}
