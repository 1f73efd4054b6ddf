import AirlockProtocol
import Testing

/// The client's blocking round trip without `Message`: `ClientFrames` (requests written
/// straight into a writer) and `FrameDecoder.takeSuccessfulCompletion(of:)` (its answer
/// checked in place) against the codec.
@Suite struct ClientFastPathTests {
    /// What `FrameDecoder.next()` gave: a frame (nil: more bytes needed) or an error.
    enum Outcome: Equatable {
        case frame(Frame?)
        case error(ProtocolError)

        static func next(_ decoder: inout FrameDecoder) -> Outcome {
            do throws(ProtocolError) {
                return .frame(try decoder.next())
            } catch {
                return .error(error)
            }
        }
    }

    /// An `OPERATION_COMPLETE` laid out by hand, so its strings may be any bytes.
    static func completion(
        operationID: UInt64, flags: UInt16 = 1, errorCode: UInt32 = 0, information: [UInt8]?, message: [UInt8]
    ) -> [UInt8] {
        var payload: [UInt8] = []
        func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { payload += $0 } }
        u32(errorCode)
        if let information {
            payload.append(1)
            u32(UInt32(information.count))
            payload += information
        } else {
            payload.append(0)
        }
        u32(UInt32(message.count))
        payload += message
        var frame: [UInt8] = []
        withUnsafeBytes(of: UInt32(12 + payload.count).littleEndian) { frame += $0 }
        withUnsafeBytes(of: MessageType.operationComplete.rawValue.littleEndian) { frame += $0 }
        withUnsafeBytes(of: flags.littleEndian) { frame += $0 }
        withUnsafeBytes(of: operationID.littleEndian) { frame += $0 }
        return frame + payload
    }

    static let own: UInt64 = 0x0102_0304_0506_0708

    /// Frames around the rules: valid successes, errors, other ids and flags, odd strings.
    static let samples: [[UInt8]] = {
        var samples: [[UInt8]] = []
        let strings: [[UInt8]] = [
            [], Array("done".utf8), Array("plug-in said: all fine, really fine".utf8), [0xC3, 0xA9], [0xF0, 0x9F, 0x98, 0x80],
            [0x00], Array("abcdefgh".utf8) + [0x00], [0xC3], [0xFF], [0xED, 0xA0, 0x80], Array("abcdefghij".utf8) + [0xC0, 0x80],
        ]
        for information in [nil] + strings.map(Optional.some) {
            samples.append(completion(operationID: own, information: information, message: []))
        }
        for message in strings {
            samples.append(completion(operationID: own, information: nil, message: message))
        }
        samples.append(completion(operationID: own, errorCode: 995, information: nil, message: Array("aborted".utf8)))
        samples.append(completion(operationID: own + 1, information: nil, message: []))
        samples.append(completion(operationID: own, flags: 0, information: nil, message: []))
        samples.append(completion(operationID: own, flags: 3, information: nil, message: []))
        samples.append(Frame(operationID: own, flags: .final, message: .pong(token: 5)).encoded())
        samples.append(Frame(operationID: own, flags: .final, message: .error(ErrorReport(errorCode: 5, message: "no"))).encoded())
        samples.append(Frame(operationID: own, flags: .final, message: .operationComplete(OperationComplete(errorCode: 0, extendedInformation: "x", message: "y"))).encoded())
        return samples
    }()

    /// Feeds `bytes` (then a PING, so something follows) to two decoders: one asked for the
    /// own success in place first, one only through `next()`. The in-place check must take
    /// exactly the frames `next()` decodes as a successful final OPERATION_COMPLETE of the
    /// own id, and leave every other frame (or error) to `next()` untouched.
    static func check(_ bytes: [UInt8], maxFrameSize: Int = ProtocolLimits.defaultMaxFrameSize, _ problems: inout [String]) {
        let trailer = Frame(operationID: 0, message: .ping(token: 77)).encoded()
        var inPlace = FrameDecoder(maxFrameSize: maxFrameSize)
        var reference = FrameDecoder(maxFrameSize: maxFrameSize)
        inPlace.append(bytes + trailer)
        reference.append(bytes + trailer)
        let taken = inPlace.takeSuccessfulCompletion(of: own)
        let first = Outcome.next(&reference)
        var expected = false
        if case .frame(let frame?) = first, frame.operationID == own, frame.flags == .final,
           case .operationComplete(let complete) = frame.message, complete.errorCode == 0 {
            expected = true
        }
        if taken != expected { problems.append("taken \(taken), next() gave \(first) for \(bytes)") }
        if taken {
            // The trailer comes next, as after next() decoded the completion.
            let after = Outcome.next(&inPlace)
            if after != Outcome.next(&reference) { problems.append("after the taken frame: \(after) for \(bytes)") }
        } else {
            let outcome = Outcome.next(&inPlace)
            if outcome != first { problems.append("next() after a refusal gave \(outcome), not \(first), for \(bytes)") }
        }
    }

    @Test func successesAreTakenInPlaceExactlyWhenNextDecodesThem() {
        var problems: [String] = []
        for sample in Self.samples { Self.check(sample, &problems) }
        #expect(problems == [])
    }

    @Test func everyOneByteChangeAndTruncationAgreesWithNext() {
        var problems: [String] = []
        for sample in Self.samples {
            for index in sample.indices {
                for value: UInt8 in [0x00, 0x01, 0x02, 0x0C, 0x80, 0xFF, sample[index] ^ 0x01] where value != sample[index] {
                    var changed = sample
                    changed[index] = value
                    Self.check(changed, &problems)
                }
            }
            for count in 0..<sample.count { Self.check(Array(sample.prefix(count)), &problems) }
        }
        #expect(problems.count == 0, "\(problems.prefix(5))")
    }

    @Test func aFrameOverTheLimitIsLeftToNext() {
        var problems: [String] = []
        let sample = Self.completion(operationID: Self.own, information: Array("long enough".utf8), message: [])
        for limit in [sample.count - 1, sample.count, 16] { Self.check(sample, maxFrameSize: limit, &problems) }
        #expect(problems == [])
    }

    @Test func theOwnSuccessIsFoundAfterOtherFramesAndBeforeOthers() {
        var decoder = FrameDecoder(maxFrameSize: ProtocolLimits.defaultMaxFrameSize)
        let ping = Frame(operationID: 0, message: .ping(token: 1))
        let own = Self.completion(operationID: Self.own, information: nil, message: [])
        decoder.append(ping.encoded() + own + own)
        var taken = decoder.takeSuccessfulCompletion(of: Self.own)
        #expect(!taken)
        let first = Outcome.next(&decoder)
        #expect(first == .frame(ping))
        taken = decoder.takeSuccessfulCompletion(of: Self.own)
        #expect(taken && decoder.bufferedByteCount == own.count)
        taken = decoder.takeSuccessfulCompletion(of: Self.own)
        #expect(taken && decoder.bufferedByteCount == 0)
        taken = decoder.takeSuccessfulCompletion(of: Self.own)
        #expect(!taken)
        // Half a frame: nothing is taken until the rest arrives.
        decoder.append(Array(own.prefix(20)))
        taken = decoder.takeSuccessfulCompletion(of: Self.own)
        #expect(!taken)
        decoder.append(Array(own.dropFirst(20)))
        taken = decoder.takeSuccessfulCompletion(of: Self.own)
        #expect(taken)
        #expect(!decoder.isMidFrame)
    }

    @Test func requestsWrittenStraightAreTheCodecsBytes() {
        let codes = ["", "ctrl_c", "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c", "signé €"]
        for code in codes {
            for (shellID, commandID, timeoutMs) in [(UInt64(1), UInt64(0), UInt32(0)), (.max, 77, .max)] {
                var writer = ByteWriter(reservingCapacity: 16)
                writer.u8(0xAA)  // a frame need not start the writer
                ClientFrames.encodeSignal(into: &writer, operationID: 42, shellID: shellID, commandID: commandID, timeoutMs: timeoutMs, code: code)
                let frame = Frame(operationID: 42, message: .signal(SignalRequest(shellID: shellID, commandID: commandID, timeoutMs: timeoutMs, code: code)))
                #expect(writer.bytes == [0xAA] + frame.encoded(), "SIGNAL \(code)")
            }
        }
        for data in [[], [UInt8](repeating: 7, count: 1000)] {
            for endOfStream in [false, true] {
                var writer = ByteWriter()
                ClientFrames.encodeSend(
                    into: &writer, operationID: 9, shellID: 3, commandID: 4, timeoutMs: 60_000, stream: "stdin", endOfStream: endOfStream, data: data)
                let frame = Frame(operationID: 9, message: .send(SendInput(
                    shellID: 3, commandID: 4, timeoutMs: 60_000, stream: "stdin", endOfStream: endOfStream, data: data)))
                #expect(writer.bytes == frame.encoded(), "SEND of \(data.count) bytes")
            }
        }
    }
}
