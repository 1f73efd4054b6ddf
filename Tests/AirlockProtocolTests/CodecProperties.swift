// The properties every input must satisfy, checked by the mutation tests and by the
// libFuzzer target (Tests/Fuzz/run-fuzz.sh compiles this file into the fuzzer together
// with Sources/AirlockProtocol as one module, hence the conditional import). No Testing
// and no Foundation here.
#if canImport(AirlockProtocol)
import AirlockProtocol
#endif

/// Checks the decoder's contract on arbitrary bytes.
///
/// 1. As one packet (`Frame.decode`): a decoded frame re-encodes to exactly the input
///    (the encoding is canonical, so this implies decode(encode(frame)) == frame).
/// 2. As a stream (`FrameDecoder`): fed all at once and fed in pseudo-random pieces no
///    larger than `readCapacity`, it yields the same frames and the same error; every
///    frame re-encodes to exactly the bytes it was cut from; and the buffered bytes plus
///    `readCapacity` never exceed `maxFrameSize + 64 KiB`. Fed in pieces with every result's
///    data set aside once its start is in (`setAsideResultData`), it yields the same
///    frames and the same error too.
/// 3. to 5. The in-place readers, `ResultFrames.checkWorkerResult`, `ShellRequestPacket` and
///    `CompletionFrame.readWorkerComplete` (the supervisor's) and `WorkerRequestPacket` (the
///    worker's), agree with `Frame.decode`, and the in-place writers with `encode` (see each
///    check).
///
/// Nothing here may trap on any input; a trap is a bug in the codec.
enum CodecProperties {
    /// The frame limit both decoders use.
    static let maxFrameSize = 65_536
    /// The most `FrameDecoder` may buffer beyond one maximum-size frame.
    static let readSlack = 65_536

    /// Every violated property, in words; empty when the codec behaved.
    static func violations(in input: [UInt8], maxFrameSize: Int = maxFrameSize) -> [String] {
        var problems: [String] = []
        checkPacket(input, maxFrameSize: maxFrameSize, &problems)
        checkStream(input, maxFrameSize: maxFrameSize, &problems)
        return problems
    }

    /// Outcome of decoding a stream: the frames, then the error that stopped it (if any).
    struct StreamOutcome: Equatable {
        var frames: [Frame] = []
        var error: ProtocolError?
        /// Bytes the frames were cut from, in order.
        var consumed = 0
    }

    static func checkPacket(_ input: [UInt8], maxFrameSize: Int, _ problems: inout [String]) {
        let decoded = decodeResult(input, maxFrameSize: maxFrameSize)
        checkResultRelay(input, decoded: decoded, maxFrameSize: maxFrameSize, &problems)
        checkRequestInPlace(input, decoded: decoded, maxFrameSize: maxFrameSize, &problems)
        checkSupervisorInPlace(input, decoded: decoded, maxFrameSize: maxFrameSize, &problems)
        guard case .success(let frame) = decoded else { return }
        let reencoded = frame.encoded()
        if reencoded != input {
            problems.append("packet: \(frame.message.type.wireName) re-encodes to \(reencoded.count) different bytes")
        }
        do {
            let again = try Frame.decode(reencoded, maxFrameSize: maxFrameSize)
            if again != frame { problems.append("packet: decode(encode(frame)) != frame for \(frame.message.type.wireName)") }
        } catch {
            problems.append("packet: the re-encoded \(frame.message.type.wireName) does not decode: \(error)")
        }
    }

    /// What `Frame.decode` makes of `input`: the reference the in-place readers are held to
    /// (the checks below take it as `decoded` when the caller has it already).
    static func decodeResult(_ input: [UInt8], maxFrameSize: Int) -> Result<Frame, ProtocolError> {
        do throws(ProtocolError) {
            return .success(try Frame.decode(input, maxFrameSize: maxFrameSize))
        } catch {
            return .failure(error)
        }
    }

    /// 3. `ResultFrames.checkWorkerResult` (the supervisor's in-place check of a
    ///    `W_RESULT` it relays) accepts exactly what `Frame.decode` accepts, with the same
    ///    error code, the same operation id and the data's byte count; it passes (nil) on
    ///    every other type and on text results. `binaryResultParts` around the data is
    ///    the frame `encode` writes, and `binaryDataRange` finds the data where it lies.
    static func checkResultRelay(
        _ input: [UInt8], decoded: Result<Frame, ProtocolError>? = nil, maxFrameSize: Int, _ problems: inout [String]
    ) {
        let decoded = decoded ?? decodeResult(input, maxFrameSize: maxFrameSize)
        let checked: Result<ResultFrames.Checked?, ProtocolError> = input.withUnsafeBytes { packet in
            do throws(ProtocolError) {
                return .success(try ResultFrames.checkWorkerResult(packet, maxFrameSize: maxFrameSize))
            } catch {
                return .failure(error)
            }
        }
        switch (decoded, checked) {
        case (.success(let frame), .success(nil)):
            // Passing is right for other types and for text results (left to the decoder).
            if frame.message.type != .workerResult, input.withUnsafeBytes({ ResultFrames.binaryDataRange(inResultHead: $0) }) != nil {
                problems.append("relay: binaryDataRange found data in a \(frame.message.type.wireName)")
            }
            if case .workerResult(let result) = frame.message {
                if case .text = result.streamResult { break }
                problems.append("relay: checkWorkerResult passed on a W_RESULT without text")
            }
        case (.failure, .success(nil)):
            // A malformed frame of another type, or a W_RESULT whose text the decoder rejects.
            break
        case (.success(let frame), .success(let summary?)):
            guard case .workerResult(let result) = frame.message else {
                problems.append("relay: checkWorkerResult accepted a \(frame.message.type.wireName)")
                return
            }
            var count: UInt32 = 0
            if case .binary(let bytes) = result.streamResult { count = UInt32(bytes.count) }
            if summary.operationID != frame.operationID || summary.dataByteCount != count {
                problems.append("relay: checkWorkerResult read operation \(summary.operationID) and \(summary.dataByteCount) bytes, decode \(frame.operationID) and \(count)")
            }
            // The in-place relay sends the data from where binaryDataRange says it lies.
            if case .binary(let bytes) = result.streamResult {
                let range = input.withUnsafeBytes { ResultFrames.binaryDataRange(inResultHead: $0) }
                if range.map({ $0.upperBound <= input.count ? Array(input[$0]) : [] }) != bytes {
                    problems.append("relay: binaryDataRange gave \(String(describing: range)), not where the \(bytes.count) data bytes lie")
                }
            }
            if case .binary(let bytes) = result.streamResult, frame.flags.isEmpty {
                let (head, tail) = ResultFrames.binaryResultParts(
                    type: .workerResult, operationID: frame.operationID, resultFlags: result.flags, stream: result.stream,
                    byteCount: bytes.count, commandState: result.commandState, exitCode: result.exitCode)
                if head + bytes + tail != input { problems.append("relay: binaryResultParts differs from encode") }
            }
        case (.failure(let error), .success(let summary?)):
            problems.append("relay: checkWorkerResult accepted operation \(summary.operationID) that decode rejects: \(error)")
        case (.success(let frame), .failure(let error)):
            problems.append("relay: checkWorkerResult rejected a \(frame.message.type.wireName) that decode accepts: \(error)")
        case (.failure(let expected), .failure(let error)):
            if expected.code != error.code {
                problems.append("relay: checkWorkerResult's error \(error) differs from decode's \(expected)")
            }
        }
    }

    /// 4. `WorkerRequestPacket` (the worker's in-place read of `W_SHELL` ... `W_CONNECT`)
    ///    accepts exactly the requests `Frame.decode` accepts and reads the same fields;
    ///    it rejects the rest with the same error (code and message), and passes (nil) on
    ///    every other type and on packets shorter than a header.
    static func checkRequestInPlace(
        _ input: [UInt8], decoded: Result<Frame, ProtocolError>? = nil, maxFrameSize: Int, _ problems: inout [String]
    ) {
        let decoded = decoded ?? decodeResult(input, maxFrameSize: maxFrameSize)
        let read: Result<Frame?, ProtocolError> = input.withUnsafeBytes { packet in
            do throws(ProtocolError) {
                return .success(try readInPlace(packet, maxFrameSize: maxFrameSize).map(frame(of:)))
            } catch {
                return .failure(error)
            }
        }
        let isRequest = input.withUnsafeBytes { WorkerRequestPacket.requestType(of: $0) } != nil
        switch (decoded, read) {
        case (.success(let frame), .success(nil)):
            if isRequest { problems.append("in place: WorkerRequestPacket passed on a \(frame.message.type.wireName) that decode accepts") }
        case (.failure(let error), .success(nil)):
            if isRequest { problems.append("in place: WorkerRequestPacket passed on a request that decode rejects: \(error)") }
        case (.success(let frame), .success(let read?)):
            if read != frame { problems.append("in place: WorkerRequestPacket read \(read), decode \(frame)") }
        case (.failure(let error), .success(let read?)):
            problems.append("in place: WorkerRequestPacket accepted a \(read.message.type.wireName) that decode rejects: \(error)")
        case (.success(let frame), .failure(let error)):
            problems.append("in place: WorkerRequestPacket rejected a \(frame.message.type.wireName) that decode accepts: \(error)")
        case (.failure(let expected), .failure(let error)):
            if expected != error { problems.append("in place: WorkerRequestPacket's error \(error) differs from decode's \(expected)") }
        }
    }

    /// 5. airlockd's in-place readers and writers: `ShellRequestPacket` (a client `SIGNAL`
    ///    or `RECEIVE`) and `CompletionFrame.readWorkerComplete` (a worker's `W_COMPLETE`)
    ///    accept exactly what `Frame.decode` accepts, read the same fields and reject the
    ///    rest with the same error (code and message); the worker request a client request
    ///    is forwarded as, and an `OPERATION_COMPLETE` written directly, are byte for byte
    ///    what `encode` writes.
    static func checkSupervisorInPlace(
        _ input: [UInt8], decoded: Result<Frame, ProtocolError>? = nil, maxFrameSize: Int, _ problems: inout [String]
    ) {
        let decoded = decoded ?? decodeResult(input, maxFrameSize: maxFrameSize)
        if case .success(let frame) = decoded, case .operationComplete(let complete) = frame.message, frame.flags == .final {
            var w = ByteWriter()
            CompletionFrame.encodeOperationComplete(
                operationID: frame.operationID, errorCode: complete.errorCode, extendedInformation: complete.extendedInformation,
                message: complete.message, into: &w)
            if w.bytes != input { problems.append("supervisor: encodeOperationComplete differs from encode") }
        }
        guard input.count >= ProtocolLimits.headerSize else { return }
        let rawType = UInt16(input[4]) | UInt16(input[5]) << 8
        if let kind = ShellRequestPacket.kind(ofFrameType: rawType) {
            let context = RequestContext(
                senderName: "alice", authenticationMechanism: "UnixPeerCredentials", resourceURI: "http://schemas.example/shell",
                locale: "en-US", dataLocale: "de-DE", timeoutMs: 1234, httpURL: "https://gateway.example/wsman")
            let read: Result<(operationID: UInt64, shellID: UInt64, commandID: UInt64, timeoutMs: UInt32, forwarded: [UInt8]), ProtocolError> =
                input.withUnsafeBytes { packet in
                    do throws(ProtocolError) {
                        let request = try ShellRequestPacket(frame: packet, kind: kind, maxFrameSize: maxFrameSize)
                        var w = ByteWriter()
                        request.encodeWorkerRequest(
                            operationID: 77, senderName: context.senderName, authenticationMechanism: context.authenticationMechanism,
                            resourceURI: context.resourceURI, locale: context.locale, dataLocale: context.dataLocale,
                            timeoutMs: context.timeoutMs, httpURL: context.httpURL, into: &w)
                        return .success((request.operationID, request.shellID, request.commandID, request.timeoutMs, w.bytes))
                    } catch {
                        return .failure(error)
                    }
                }
            switch (decoded, read) {
            case (.success(let frame), .success(let read)):
                let expected: Message
                switch frame.message {
                case .signal(let m):
                    guard (m.shellID, m.commandID, m.timeoutMs) == (read.shellID, read.commandID, read.timeoutMs) else {
                        problems.append("supervisor: ShellRequestPacket read other fields than decode for SIGNAL")
                        return
                    }
                    expected = .workerSignal(WorkerSignal(context: context, shellID: m.shellID, commandID: m.commandID, code: m.code))
                case .receive(let m):
                    guard (m.shellID, m.commandID, m.timeoutMs) == (read.shellID, read.commandID, read.timeoutMs) else {
                        problems.append("supervisor: ShellRequestPacket read other fields than decode for RECEIVE")
                        return
                    }
                    expected = .workerReceive(WorkerReceive(context: context, shellID: m.shellID, commandID: m.commandID, streams: m.streams))
                default:
                    problems.append("supervisor: ShellRequestPacket accepted a \(frame.message.type.wireName)")
                    return
                }
                if read.operationID != frame.operationID { problems.append("supervisor: ShellRequestPacket read another operation id") }
                if read.forwarded != Frame(operationID: 77, message: expected).encoded() {
                    problems.append("supervisor: the forwarded \(expected.type.wireName) differs from encode")
                }
            case (.failure(let error), .success):
                problems.append("supervisor: ShellRequestPacket accepted a request that decode rejects: \(error)")
            case (.success(let frame), .failure(let error)):
                problems.append("supervisor: ShellRequestPacket rejected a \(frame.message.type.wireName) that decode accepts: \(error)")
            case (.failure(let expected), .failure(let error)):
                if expected != error { problems.append("supervisor: ShellRequestPacket's error \(error) differs from decode's \(expected)") }
            }
        }
        if rawType == MessageType.workerComplete.rawValue {
            let read: Result<Frame?, ProtocolError> = input.withUnsafeBytes { packet in
                do throws(ProtocolError) {
                    return .success(try CompletionFrame.readWorkerComplete(packet, maxFrameSize: maxFrameSize).map {
                        Frame(operationID: $0.operationID, message: .workerComplete($0.completion))
                    })
                } catch {
                    return .failure(error)
                }
            }
            switch (decoded, read) {
            case (.success(let frame), .success(let read?)):
                // The flags are not part of what readWorkerComplete reports.
                if read.operationID != frame.operationID || read.message != frame.message {
                    problems.append("supervisor: readWorkerComplete read \(read), decode \(frame)")
                }
            case (_, .success(nil)):
                problems.append("supervisor: readWorkerComplete passed on a W_COMPLETE")
            case (.failure(let error), .success):
                problems.append("supervisor: readWorkerComplete accepted a W_COMPLETE that decode rejects: \(error)")
            case (.success, .failure(let error)):
                problems.append("supervisor: readWorkerComplete rejected a W_COMPLETE that decode accepts: \(error)")
            case (.failure(let expected), .failure(let error)):
                if expected != error { problems.append("supervisor: readWorkerComplete's error \(error) differs from decode's \(expected)") }
            }
        }
    }

    /// `packet` read the worker's way: in place when it is an operation request, else nil.
    static func readInPlace(_ packet: UnsafeRawBufferPointer, maxFrameSize: Int) throws(ProtocolError) -> WorkerRequestPacket? {
        guard let type = WorkerRequestPacket.requestType(of: packet) else { return nil }
        return try WorkerRequestPacket(packet: packet, type: type, maxFrameSize: maxFrameSize)
    }

    /// The frame `request` was read from, rebuilt from its views.
    static func frame(of request: WorkerRequestPacket) -> Frame {
        let c = request.context
        let context = RequestContext(
            senderName: c.senderName.string, authenticationMechanism: c.authenticationMechanism.string,
            resourceURI: c.resourceURI.string, locale: c.locale.string, dataLocale: c.dataLocale.string,
            timeoutMs: c.timeoutMs, httpURL: c.httpURL.string)
        func data(_ value: WireData) -> WSManData {
            switch value {
            case .none: .none
            case .text(let text): .text(text.string)
            case .binary(let bytes): .binary(Array(bytes))
            case .dword(let number): .dword(number)
            }
        }
        let options = request.options.map { WSManOption(name: $0.name.string, value: $0.value.string, mustComply: $0.mustComply) }
        let message: Message
        switch request.type {
        case .workerShell:
            message = .workerShell(WorkerShell(
                context: context, shellID: request.shellID, idleTimeoutMs: request.idleTimeoutMs,
                inputStreams: request.inputStreams.map(\.string), outputStreams: request.outputStreams.map(\.string),
                workingDirectory: request.workingDirectory?.string,
                environment: request.environment.map { EnvironmentVariable(name: $0.name.string, value: $0.value.string) },
                name: request.name?.string, options: options, optionsMustUnderstand: request.optionsMustUnderstand,
                inboundShellInformation: data(request.data)))
        case .workerCommand:
            message = .workerCommand(WorkerCommand(
                context: context, shellID: request.shellID, commandID: request.commandID, commandLine: request.text.string,
                arguments: request.arguments.map(\.string), options: options))
        case .workerSend:
            guard case .binary(let bytes) = request.data else { preconditionFailure("W_SEND data is binary") }
            message = .workerSend(WorkerSend(
                context: context, shellID: request.shellID, commandID: request.commandID, stream: request.text.string,
                endOfStream: request.endOfStream, data: Array(bytes)))
        case .workerReceive:
            message = .workerReceive(WorkerReceive(
                context: context, shellID: request.shellID, commandID: request.commandID, streams: request.streams.map(\.string)))
        case .workerSignal:
            message = .workerSignal(WorkerSignal(
                context: context, shellID: request.shellID, commandID: request.commandID, code: request.text.string))
        default:
            message = .workerConnect(WorkerConnect(
                context: context, shellID: request.shellID, commandID: request.commandID,
                inboundConnectInformation: data(request.data)))
        }
        return Frame(operationID: request.operationID, flags: request.flags, message: message)
    }

    static func checkStream(_ input: [UInt8], maxFrameSize: Int, _ problems: inout [String]) {
        // All at once.
        var whole = StreamOutcome()
        var decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        decoder.append(input)
        drain(&decoder, into: &whole)

        // In pieces, never more than readCapacity at a time.
        var pieces = StreamOutcome()
        var chunked = FrameDecoder(maxFrameSize: maxFrameSize)
        var random = SplitMix64(seed: fnv1a(input))
        var offset = 0
        while offset < input.count && pieces.error == nil {
            let capacity = chunked.readCapacity
            if capacity < 1 {
                problems.append("stream: readCapacity \(capacity) < 1")
                break
            }
            if chunked.bufferedByteCount + capacity > maxFrameSize + readSlack {
                problems.append("stream: \(chunked.bufferedByteCount) buffered + readCapacity \(capacity) exceeds the bound")
                break
            }
            let wanted = random.next() % 4 == 0 ? Int(random.next() % 8) + 1 : Int(random.next() % 300) + 1
            let count = min(wanted, capacity, input.count - offset)
            chunked.append(Array(input[offset..<(offset + count)]))
            offset += count
            drain(&chunked, into: &pieces)
        }

        // In the same pieces, with the data of every result set aside as soon as its start
        // has arrived (the client's receive path; appending fills the set-aside data
        // first, as the client's scattering receive does): the same frames and the same
        // error.
        var setAside = StreamOutcome()
        var scattering = FrameDecoder(maxFrameSize: maxFrameSize)
        random = SplitMix64(seed: fnv1a(input))
        offset = 0
        while offset < input.count && setAside.error == nil {
            _ = scattering.setAsideResultData(minimumMissing: 1)
            let wanted = random.next() % 4 == 0 ? Int(random.next() % 8) + 1 : Int(random.next() % 300) + 1
            let piece = input[offset..<min(offset + wanted, input.count)]
            // What the decoder holds grows by the piece: buffered bytes up, missing data down.
            let held = scattering.bufferedByteCount - scattering.missingSetAsideByteCount
            scattering.append(Array(piece))
            let took = scattering.bufferedByteCount - scattering.missingSetAsideByteCount - held
            if took != piece.count {
                problems.append("stream: appending \(piece.count) bytes with data set aside took \(took)")
                break
            }
            offset += piece.count
            drain(&scattering, into: &setAside)
        }
        if whole.frames != setAside.frames || whole.error != setAside.error {
            problems.append(
                "stream: whole input gave \(whole.frames.count) frame(s), error \(whole.error.map(String.init(describing:)) ?? "none"); "
                    + "with data set aside \(setAside.frames.count) frame(s), error \(setAside.error.map(String.init(describing:)) ?? "none")")
        }

        if whole != pieces {
            problems.append(
                "stream: whole input gave \(whole.frames.count) frame(s), error \(whole.error.map(String.init(describing:)) ?? "none"); "
                    + "pieces gave \(pieces.frames.count) frame(s), error \(pieces.error.map(String.init(describing:)) ?? "none")")
        }
        var reencoded: [UInt8] = []
        for frame in whole.frames { frame.encode(into: &reencoded) }
        if reencoded.count != whole.consumed || reencoded[...] != input[0..<min(whole.consumed, input.count)] {
            problems.append("stream: the \(whole.frames.count) frame(s) do not re-encode to the bytes they came from")
        }
        if whole.error == nil && decoder.bufferedByteCount != input.count - whole.consumed {
            problems.append("stream: \(decoder.bufferedByteCount) bytes buffered, expected \(input.count - whole.consumed)")
        }
    }

    private static func drain(_ decoder: inout FrameDecoder, into outcome: inout StreamOutcome) {
        while outcome.error == nil {
            let before = decoder.bufferedByteCount
            do {
                guard let frame = try decoder.next() else { return }
                outcome.frames.append(frame)
                outcome.consumed += before - decoder.bufferedByteCount
            } catch {
                outcome.error = error
            }
        }
    }

    /// FNV-1a, to derive a reproducible piece size sequence from the input itself.
    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash
    }
}

/// A small deterministic generator (SplitMix64), so every run mutates the same way.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
