import AirlockProtocol
import Testing

/// `FrameDecoder.setAsideResultData(minimumMissing:)`: the client receives a large
/// result's data into an array of its own. The frames must be the ones the plain decoder
/// gives, and a frame that lies about its sizes must not be set aside.
@Suite struct SetAsideDataTests {
    static let maxFrameSize = ProtocolLimits.defaultMaxFrameSize

    static func result(_ data: [UInt8], state: String? = nil, operationID: UInt64 = 7) -> Frame {
        Frame(operationID: operationID, message: .receiveResult(ReceiveResult(
            flags: 4, stream: "stdout", streamResult: .binary(data), commandState: state, exitCode: state == nil ? 0 : 3)))
    }

    /// The error `next()` throws, or nil.
    static func failure(_ decoder: inout FrameDecoder) -> ProtocolError? {
        do throws(ProtocolError) {
            _ = try decoder.next()
            return nil
        } catch {
            return error
        }
    }

    @Test func largeResultsArriveWholeThroughTheirOwnArrays() throws {
        let first = Self.result((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let second = Self.result((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }, state: "Done")
        let small = Frame(operationID: 7, flags: .final, message: .operationComplete(OperationComplete(errorCode: 0)))
        let stream = first.encoded() + second.encoded() + small.encoded()

        var decoder = FrameDecoder(maxFrameSize: Self.maxFrameSize)
        var frames: [Frame] = []
        var offset = 0
        var setAsideCount = 0
        // The start of each frame, then the rest: the way the client receives a stream.
        for cut in [100, first.encoded().count + 64, first.encoded().count + 30_000, stream.count] {
            let before = decoder.missingSetAsideByteCount
            if decoder.setAsideResultData(minimumMissing: 32_768) && before == 0 { setAsideCount += 1 }
            let missing = decoder.missingSetAsideByteCount
            let held = decoder.bufferedByteCount - missing
            decoder.append(Array(stream[offset..<cut]))  // the set-aside data first
            #expect(decoder.bufferedByteCount - decoder.missingSetAsideByteCount - held == cut - offset)
            #expect(decoder.missingSetAsideByteCount == max(0, missing - (cut - offset)))
            offset = cut
            while let frame = try decoder.next() { frames.append(frame) }
        }
        #expect(setAsideCount == 2)
        #expect(frames == [first, second, small])
        #expect(decoder.bufferedByteCount == 0 && !decoder.isMidFrame)
    }

    @Test func onlyResultsWithEnoughDataStillToComeAreSetAside() {
        let big = Self.result([UInt8](repeating: 1, count: 50_000)).encoded()
        // Not yet the whole head (the data's length is not in).
        var decoder = FrameDecoder(maxFrameSize: Self.maxFrameSize)
        decoder.append(Array(big[0..<20]))
        let beforeTheWholeHead = decoder.setAsideResultData(minimumMissing: 1)
        #expect(!beforeTheWholeHead)
        // Less than the minimum still to come.
        decoder.append(Array(big[20..<30_000]))
        let withTooLittleMissing = decoder.setAsideResultData(minimumMissing: 32_768)
        #expect(!withTooLittleMissing)
        let withEnoughMissing = decoder.setAsideResultData(minimumMissing: 1)
        #expect(withEnoughMissing)
        #expect(decoder.missingSetAsideByteCount == big.count - 30_000 - 5)  // less the tail: no state, the exit code
        // Text is decoded the usual way.
        let text = Frame(operationID: 1, message: .receiveResult(ReceiveResult(stream: "stdout", streamResult: .text(String(repeating: "a", count: 50_000)))))
        var textDecoder = FrameDecoder(maxFrameSize: Self.maxFrameSize)
        textDecoder.append(Array(text.encoded()[0..<100]))
        let textIsSetAside = textDecoder.setAsideResultData(minimumMissing: 1)
        #expect(!textIsSetAside)
    }

    @Test func aFrameThatLiesAboutItsSizesIsNotSetAsideAndFailsAsBefore() {
        var lying = Self.result([UInt8](repeating: 2, count: 40_000)).encoded()
        // The data's length says more than the frame holds.
        let dataLengthOffset = ProtocolLimits.headerSize + 4 + 1 + 4 + 6 + 1
        lying.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(60_000).littleEndian, toByteOffset: dataLengthOffset, as: UInt32.self) }
        var decoder = FrameDecoder(maxFrameSize: Self.maxFrameSize)
        decoder.append(Array(lying[0..<64]))
        let lyingIsSetAside = decoder.setAsideResultData(minimumMissing: 1)
        #expect(!lyingIsSetAside)
        decoder.append(Array(lying[64...]))
        #expect(Self.failure(&decoder) != nil)

        // A length prefix beyond the limit: nothing is allocated for it.
        var oversized = Self.result([UInt8](repeating: 3, count: 40_000)).encoded()
        oversized.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(Self.maxFrameSize).littleEndian, toByteOffset: 0, as: UInt32.self) }
        var limited = FrameDecoder(maxFrameSize: Self.maxFrameSize)
        limited.append(Array(oversized[0..<64]))
        let oversizedIsSetAside = limited.setAsideResultData(minimumMissing: 1)
        #expect(!oversizedIsSetAside)
        #expect(Self.failure(&limited) == .oversized(Self.maxFrameSize + 4, limit: Self.maxFrameSize))
    }
}
