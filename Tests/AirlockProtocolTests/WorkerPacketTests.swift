import AirlockProtocol
import Testing

/// The worker's frames without `Message`: `WorkerRequestPacket` (requests read in place)
/// and `CompletionFrame` (`W_COMPLETE` written in place) against the codec.
@Suite struct WorkerPacketTests {
    static let requestTypes: Set<MessageType> = [.workerShell, .workerCommand, .workerSend, .workerReceive, .workerSignal, .workerConnect]

    /// A `W_SIGNAL` whose code is `code`, byte for byte (valid UTF-8 or not).
    static func signal(code: [UInt8]) -> [UInt8] {
        let context = RequestContext(
            senderName: "alice", authenticationMechanism: "Basic", resourceURI: "http://schemas.example/shell", timeoutMs: 60_000)
        let placeholder = String(repeating: "x", count: code.count)
        var bytes = Frame(operationID: 9, message: .workerSignal(WorkerSignal(context: context, shellID: 3, commandID: 4, code: placeholder))).encoded()
        bytes.replaceSubrange((bytes.count - code.count)..., with: code)
        return bytes
    }

    /// Strings at the edges of the UTF-8 rules, short and long (the ASCII check reads
    /// eight bytes at a time), with the odd byte early, late and in the last word.
    static let codes: [[UInt8]] = {
        let odd: [[UInt8]] = [
            [0x00], [0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80],  // NUL, é, €, 😀
            [0xC0, 0x80], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],  // overlong, surrogate, > U+10FFFF
            [0xC3], [0xE2, 0x82], [0x80], [0xFF], [0xF5, 0x80, 0x80, 0x80],  // truncated, stray, invalid lead
        ]
        var codes: [[UInt8]] = [[], Array("ctrl_c".utf8), Array("http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate".utf8)]
        for bytes in odd {
            for prefix in [0, 1, 7, 8, 9, 15, 16, 23] {
                for suffix in [0, 1, 6, 8] {
                    codes.append(Array(repeating: UInt8(ascii: "a"), count: prefix) + bytes + Array(repeating: UInt8(ascii: "b"), count: suffix))
                }
            }
            codes.append(bytes + [0x00] + bytes)  // NUL after the odd bytes
            codes.append([0x00] + bytes)  // ... and before them
        }
        return codes
    }()

    @Test func requestsReadInPlaceAgreeWithDecodeOnEveryStringEdge() {
        for code in Self.codes {
            var problems: [String] = []
            CodecProperties.checkRequestInPlace(Self.signal(code: code), maxFrameSize: ProtocolLimits.defaultMaxFrameSize, &problems)
            #expect(problems == [], "code \(code)")
        }
    }

    @Test func requestTypesAreTheSixOperationRequests() {
        for type in MessageType.allCases {
            let header = Frame(operationID: 1, message: .workerCancel).encoded()
            var bytes = header
            bytes[4] = UInt8(truncatingIfNeeded: type.rawValue)
            bytes[5] = UInt8(truncatingIfNeeded: type.rawValue >> 8)
            let found = bytes.withUnsafeBytes { WorkerRequestPacket.requestType(of: $0) }
            #expect(found == (Self.requestTypes.contains(type) ? type : nil), "\(type.wireName)")
            #expect(bytes.dropLast().withUnsafeBytes { WorkerRequestPacket.requestType(of: UnsafeRawBufferPointer($0)) } == nil)
        }
    }

    @Test func goldenRequestsAreReadInPlace() {
        var requests = 0
        for bytes in MutationTests.seeds {
            let frame = try? Frame.decode(bytes, maxFrameSize: ProtocolLimits.defaultMaxFrameSize)
            guard let frame, Self.requestTypes.contains(frame.message.type) else { continue }
            requests += 1
            let read = bytes.withUnsafeBytes { packet in
                (try? CodecProperties.readInPlace(packet, maxFrameSize: ProtocolLimits.defaultMaxFrameSize))?.map(CodecProperties.frame(of:))
            }
            #expect(read == frame)
        }
        #expect(requests >= 6)
    }

    /// Every one-byte change of every golden request (boundary values, and one more or
    /// one less), and every truncation: the in-place read and the decoder agree.
    @Test func everyOneByteChangeOfARequestIsReadAsDecodeReadsIt() {
        let requests = MutationTests.seeds.filter { bytes in
            (try? Frame.decode(bytes, maxFrameSize: ProtocolLimits.defaultMaxFrameSize)).map { Self.requestTypes.contains($0.message.type) } == true
        }
        var problems: [String] = []
        for request in requests {
            for position in request.indices {
                let original = request[position]
                for value in Set([0, 1, 2, 0x7F, 0x80, 0xC3, 0xFF, original &+ 1, original &- 1]) where value != original {
                    var changed = request
                    changed[position] = value
                    CodecProperties.checkRequestInPlace(changed, maxFrameSize: ProtocolLimits.defaultMaxFrameSize, &problems)
                }
            }
            for length in 0..<request.count {
                var truncated = Array(request[0..<length])
                CodecProperties.checkRequestInPlace(truncated, maxFrameSize: ProtocolLimits.defaultMaxFrameSize, &problems)
                if length >= 4 {
                    MutationTests.fitLength(&truncated)
                    CodecProperties.checkRequestInPlace(truncated, maxFrameSize: ProtocolLimits.defaultMaxFrameSize, &problems)
                }
            }
            if !problems.isEmpty { break }
        }
        #expect(problems.isEmpty, "\(problems.prefix(5))")
        #expect(requests.count >= 6)
    }

    @Test(arguments: [nil, "", "the plug-in said no", "Ünïcødé €, 😀"])
    func completionFrameIsWhatEncodeWrites(information: String?) {
        for (operationID, errorCode) in [(UInt64(1), UInt32(0)), (0x0123_4567_89AB_CDEF, 0x8033_8012), (.max, .max)] {
            let expected = Frame(
                operationID: operationID, flags: .final,
                message: .workerComplete(WorkerComplete(errorCode: errorCode, extendedInformation: information))).encoded()
            let utf8 = information.map { Array($0.utf8) }
            let size = CompletionFrame.size(informationBytes: utf8?.count)
            var written = [UInt8](repeating: 0xAA, count: size + 3)
            let count = written.withUnsafeMutableBytes { buffer in
                if let utf8 {
                    return utf8.withUnsafeBytes {
                        CompletionFrame.write(operationID: operationID, errorCode: errorCode, information: $0, into: buffer)
                    }
                }
                return CompletionFrame.write(operationID: operationID, errorCode: errorCode, information: nil, into: buffer)
            }
            #expect(count == size)
            #expect(Array(written[0..<count]) == expected)
            #expect(written[count...].allSatisfy { $0 == 0xAA })
        }
    }
}

/// The supervisor's kept frame writer and the in-place request path, beyond the property
/// checks every golden and mutated vector goes through (CodecProperties 5).
@Suite struct SupervisorFastPathTests {
    @Test func byteWriterGrowsKeepsAndReleasesItsMemory() {
        var w = ByteWriter(reservingCapacity: 16)
        let long = String(repeating: "é", count: 5_000)
        w.str(long)
        w.u64(0x0102_0304_0506_0708)
        #expect(w.count == 4 + 10_000 + 8)
        #expect(w.bytes.prefix(4) == [0x10, 0x27, 0, 0])
        #expect(w.bytes.suffix(8) == [8, 7, 6, 5, 4, 3, 2, 1])
        w.removeAll(keepingCapacity: 64)
        #expect(w.count == 0)
        w.str("ok")
        #expect(w.bytes == [2, 0, 0, 0, 0x6F, 0x6B])
    }

    @Test func aSignalIsForwardedAsTheWorkerSignalEncodeWrites() throws {
        let signal = Frame(operationID: 9, message: .signal(SignalRequest(
            shellID: 3, commandID: 4, timeoutMs: 60_000, code: "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c"))).encoded()
        var decoder = FrameDecoder(maxFrameSize: 65_536)
        decoder.append(signal + signal.prefix(7))
        let peeked = try #require(try decoder.peekFrame())
        #expect(peeked.type == MessageType.signal.rawValue && peeked.size == signal.count)
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: peeked.size, alignment: 8)
        defer { copy.deallocate() }
        decoder.takeFrame(into: copy)
        #expect(decoder.bufferedByteCount == 7 && decoder.isMidFrame)
        let request = try ShellRequestPacket(frame: UnsafeRawBufferPointer(copy), kind: .signal, maxFrameSize: 65_536)
        #expect(request.operationID == 9 && request.shellID == 3 && request.commandID == 4 && request.timeoutMs == 60_000)
        var w = ByteWriter()
        request.encodeWorkerRequest(
            operationID: 21, senderName: "bob", authenticationMechanism: "Basic", resourceURI: "http://x/y", locale: "en-US",
            dataLocale: "en-US", timeoutMs: 60_000, httpURL: "", into: &w)
        let context = RequestContext(senderName: "bob", authenticationMechanism: "Basic", resourceURI: "http://x/y", timeoutMs: 60_000)
        #expect(w.bytes == Frame(operationID: 21, message: request.workerMessage(context: context)).encoded())
        guard case .workerSignal(let forwarded) = request.workerMessage(context: context) else {
            Issue.record("not a W_SIGNAL")
            return
        }
        #expect(forwarded.code.hasSuffix("ctrl_c"))
    }
}
