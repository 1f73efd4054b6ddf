import AirlockProtocol
import Testing

/// Malformed input: `proto/vectors/invalid.txt`, then systematic damage to every golden
/// vector. Every case must end in a ``ProtocolError`` (or, for a stream, "need more
/// bytes"); none may trap or allocate beyond the frame.
@Suite struct RejectionTests {
    static let invalid = VectorFile.load("invalid.txt")
    static let golden = VectorFile.load("frames.txt")
    static let limit = ProtocolLimits.defaultMaxFrameSize

    static func code(_ vector: Vector) -> UInt32 {
        let text = vector.attributes["reject"]!
        return text.hasPrefix("0x") ? UInt32(text.dropFirst(2), radix: 16)! : UInt32(text)!
    }

    static func limit(_ vector: Vector) -> Int {
        vector.attributes["maxFrameSize"].map { Int($0)! } ?? limit
    }

    /// The error `body` throws, or nil.
    static func error(_ body: () throws(ProtocolError) -> Frame?) -> ProtocolError? {
        do {
            _ = try body()
            return nil
        } catch {
            return error
        }
    }

    /// Feeds `bytes` to a fresh stream decoder and returns what stopped it.
    static func streamOutcome(_ bytes: [UInt8], maxFrameSize: Int = limit) -> (frames: [Frame], error: ProtocolError?) {
        var decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        decoder.append(bytes)
        var frames: [Frame] = []
        while true {
            do {
                guard let frame = try decoder.next() else { return (frames, nil) }
                frames.append(frame)
            } catch {
                return (frames, error)
            }
        }
    }

    /// `bytes` with its length prefix rewritten to match its size.
    static func withFittingLength(_ bytes: [UInt8]) -> [UInt8] {
        var bytes = bytes
        let length = UInt32(bytes.count - 4)
        for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(i))) }
        return bytes
    }

    // MARK: invalid.txt

    @Test("invalid.txt: rejected as a packet with its code", arguments: invalid)
    func rejectedAsPacket(_ vector: Vector) {
        let error = Self.error { () throws(ProtocolError) in try Frame.decode(vector.bytes, maxFrameSize: Self.limit(vector)) }
        #expect(error?.code == Self.code(vector), "\(error.map(String.init(describing:)) ?? "accepted")")
    }

    @Test("invalid.txt: rejected by the stream decoder with its code", arguments: invalid.filter { $0.attributes["mode"] != "packet" })
    func rejectedAsStream(_ vector: Vector) {
        let outcome = Self.streamOutcome(vector.bytes, maxFrameSize: Self.limit(vector))
        #expect(outcome.frames.isEmpty)
        #expect(outcome.error?.code == Self.code(vector), "\(outcome.error.map(String.init(describing:)) ?? "no error")")
    }

    @Test func invalidFileCoversWhatTheBriefLists() {
        let names = Set(Self.invalid.map(\.name))
        for required in [
            "length.below-12", "length.oversized", "type.0x7777", "flags.bit-1", "payload.trailing-byte",
            "payload.truncated-u64", "utf8.bad-continuation", "str.nul", "bool.2", "data.kind-3", "list.count-u32-max",
        ] {
            #expect(names.contains(required), "\(required)")
        }
    }

    // MARK: Framing

    @Test func everyLengthBelow12IsRejectedAfterFourBytes() {
        for length in UInt8(0)..<12 {
            var decoder = FrameDecoder(maxFrameSize: Self.limit)
            decoder.append([length, 0, 0])
            #expect(Self.error { () throws(ProtocolError) in try decoder.next() } == nil)
            decoder.append([0])
            let error = Self.error { () throws(ProtocolError) in try decoder.next() }
            #expect(error?.code == WSManError.invalidParameter, "length \(length)")
            let packet = [length, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            #expect(Self.error { () throws(ProtocolError) in try Frame.decode(packet, maxFrameSize: Self.limit) }?.code == WSManError.invalidParameter)
        }
    }

    @Test(arguments: [4_096, 65_536, 512_000])
    func oversizedLengthPrefixIsRejectedBeforeTheBody(maxFrameSize: Int) {
        for length in [maxFrameSize - 3, maxFrameSize + 100, Int(UInt32.max)] {
            var decoder = FrameDecoder(maxFrameSize: maxFrameSize)
            let prefix = (0..<4).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) }
            decoder.append(prefix)
            #expect(decoder.readCapacity >= 1)
            #expect(decoder.bufferedByteCount + decoder.readCapacity <= maxFrameSize + 65_536)
            let error = Self.error { () throws(ProtocolError) in try decoder.next() }
            #expect(error == .oversized(length + 4, limit: maxFrameSize))
            #expect(error?.code == WSManError.maxEnvelopeSizeExceeded)
        }
        // The largest allowed length waits for its body instead.
        var decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        let length = maxFrameSize - 4
        decoder.append((0..<4).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) })
        #expect(Self.error { () throws(ProtocolError) in try decoder.next() } == nil)
        #expect(decoder.isMidFrame)
    }

    @Test func everyUndefinedTypeIsRejected() throws {
        let ping = try #require(Self.golden.first { $0.name == "ping" }).bytes
        var rejected = 0
        for raw in 0...UInt16.max where MessageType(rawValue: raw) == nil {
            var bytes = ping
            bytes[4] = UInt8(truncatingIfNeeded: raw)
            bytes[5] = UInt8(truncatingIfNeeded: raw >> 8)
            let error = Self.error { () throws(ProtocolError) in try Frame.decode(bytes, maxFrameSize: Self.limit) }
            if error?.code == WSManError.invalidParameter { rejected += 1 }
        }
        #expect(rejected == 65_536 - MessageType.allCases.count)
    }

    @Test func everyUndefinedFlagBitIsRejected() throws {
        let ping = try #require(Self.golden.first { $0.name == "ping" }).bytes
        for bit in 1..<16 {
            for final in [false, true] {
                var bytes = ping
                let flags = UInt16(1) << UInt16(bit) | (final ? 1 : 0)
                bytes[6] = UInt8(truncatingIfNeeded: flags)
                bytes[7] = UInt8(truncatingIfNeeded: flags >> 8)
                let error = Self.error { () throws(ProtocolError) in try Frame.decode(bytes, maxFrameSize: Self.limit) }
                #expect(error?.code == WSManError.invalidParameter, "flags \(flags)")
            }
        }
    }

    // MARK: Damage to every golden vector

    /// Cutting a vector short anywhere: as a packet it is rejected; with its length
    /// prefix fixed to fit, its payload is truncated inside some field and rejected; as
    /// the start of a stream it is "need more bytes", never an error or a frame.
    @Test("every prefix of a vector is rejected or incomplete", arguments: golden)
    func everyPrefixIsRejectedOrIncomplete(_ vector: Vector) {
        let bytes = vector.bytes
        for cut in 0..<bytes.count {
            let prefix = Array(bytes[0..<cut])
            let asPacket = Self.error { () throws(ProtocolError) in try Frame.decode(prefix, maxFrameSize: Self.limit) }
            #expect(asPacket?.code == WSManError.invalidParameter, "cut at \(cut)")

            if cut >= 16 {
                let fitted = Self.withFittingLength(prefix)
                let truncated = Self.error { () throws(ProtocolError) in try Frame.decode(fitted, maxFrameSize: Self.limit) }
                #expect(truncated?.code == WSManError.invalidParameter, "cut at \(cut)")
                #expect(Self.streamOutcome(fitted).error?.code == WSManError.invalidParameter, "cut at \(cut)")
            }

            let asStream = Self.streamOutcome(prefix)
            #expect(asStream.frames.isEmpty && asStream.error == nil, "cut at \(cut)")
        }
    }

    @Test("a vector with trailing bytes is rejected", arguments: golden)
    func trailingBytesAreRejected(_ vector: Vector) {
        for extra in [[0x00], [0x01, 0x02, 0x03, 0x04], Array(repeating: UInt8(0xFF), count: 9)] as [[UInt8]] {
            let fitted = Self.withFittingLength(vector.bytes + extra)
            let error = Self.error { () throws(ProtocolError) in try Frame.decode(fitted, maxFrameSize: Self.limit) }
            #expect(error?.code == WSManError.invalidParameter)
            #expect(error?.message.contains("trailing") == true, "\(error.map(String.init(describing:)) ?? "accepted")")
        }
    }

    // MARK: Field values

    static func status(_ plugin: [UInt8]) -> [UInt8] {
        let count = UInt32(plugin.count)
        return withFittingLength(
            [0, 0, 0, 0, 0x81, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
                + (0..<4).map { UInt8(truncatingIfNeeded: count >> (8 * $0)) } + plugin)
    }

    @Test func everySingleByteStringIsCheckedForUTF8AndNUL() {
        for byte in 0...UInt8.max {
            let result = Result { () throws(ProtocolError) in try Frame.decode(Self.status([byte]), maxFrameSize: Self.limit) }
            switch (byte, result) {
            case (0, .failure(let error)):
                #expect(error.message.contains("NUL"))
            case (1...0x7F, .success(let frame)):
                #expect(frame.message == .status(plugin: String(UnicodeScalar(byte))))
            case (0x80..., .failure(let error)):
                #expect(error.message.contains("UTF-8"), "byte \(byte)")
            default:
                Issue.record("byte \(byte): \(result)")
            }
        }
    }

    @Test func everyTwoByteSequenceFollowsTheUTF8Table() {
        // Well-formed two-byte sequences (Unicode Table 3-7): C2..DF followed by 80..BF.
        // Any ASCII pair is fine too; everything else must be rejected.
        for first in 0...UInt8.max {
            for second in 0...UInt8.max {
                let valid = (1...0x7F ~= first && 1...0x7F ~= second) || (0xC2...0xDF ~= first && 0x80...0xBF ~= second)
                let decoded = (try? Frame.decode(Self.status([first, second]), maxFrameSize: Self.limit)) != nil
                if decoded != valid {
                    Issue.record("bytes \([first, second].hex): decoded \(decoded), expected \(valid)")
                }
            }
        }
    }

    /// Well-formed UTF-8 as Unicode's Table 3-7 defines it, without NUL: the reference
    /// the decoder is compared with.
    static func isWellFormedUTF8WithoutNUL(_ bytes: [UInt8]) -> Bool {
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i]
            let (length, second): (Int, ClosedRange<UInt8>) =
                switch b0 {
                case 0x01...0x7F: (1, 0x80...0xBF)
                case 0xC2...0xDF: (2, 0x80...0xBF)
                case 0xE0: (3, 0xA0...0xBF)
                case 0xE1...0xEC, 0xEE...0xEF: (3, 0x80...0xBF)
                case 0xED: (3, 0x80...0x9F)
                case 0xF0: (4, 0x90...0xBF)
                case 0xF1...0xF3: (4, 0x80...0xBF)
                case 0xF4: (4, 0x80...0x8F)
                default: (0, 0x80...0xBF)
                }
            if length == 0 || i + length > bytes.count { return false }
            if length > 1 && !second.contains(bytes[i + 1]) { return false }
            for k in 2..<max(2, length) where !(0x80...0xBF).contains(bytes[i + k]) { return false }
            i += length
        }
        return true
    }

    @Test func randomStringsAreJudgedLikeTheUnicodeTable() {
        // Bytes drawn mostly from the boundaries of Table 3-7, so every branch is hit.
        let alphabet: [UInt8] = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                                 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
        var random = SplitMix64(seed: 7)
        var valid = 0
        for _ in 0..<30_000 {
            let count = Int(random.next() % 7) + 1
            let bytes = (0..<count).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }
            let expected = Self.isWellFormedUTF8WithoutNUL(bytes)
            let decoded = try? Frame.decode(Self.status(bytes), maxFrameSize: Self.limit)
            if (decoded != nil) != expected {
                Issue.record("bytes \(bytes.hex): decoded \(decoded != nil), expected \(expected)")
                return
            }
            if let decoded, case .status(let plugin) = decoded.message, Array(plugin.utf8) != bytes {
                Issue.record("bytes \(bytes.hex) came back as \(Array(plugin.utf8).hex)")
            }
            if expected { valid += 1 }
        }
        #expect(valid > 300)  // the sample holds valid strings too, not only rejections
    }

    @Test func listCountOfU32MaxFailsBeforeAllocating() throws {
        for name in ["list.count-u32-max", "str.count-u32-max"] {
            let vector = try #require(Self.invalid.first { $0.name == name })
            let error = Self.error { () throws(ProtocolError) in try Frame.decode(vector.bytes, maxFrameSize: Self.limit) }
            // The count is refused by comparing it with the bytes left, before any
            // array is reserved (ByteReader.list / ByteReader.need).
            #expect(error?.message.contains("4294967295") == true, "\(error.map(String.init(describing:)) ?? "accepted")")
        }
    }

    // MARK: FrameDecoder bounds

    @Test func readCapacityStaysBoundedOverALongStream() throws {
        let maxFrameSize = 65_536
        var random = SplitMix64(seed: 42)
        let (stream, expected) = Self.sendStream(
            frames: 300, fullSizeEvery: 7, smallBelow: 2_000, maxFrameSize: maxFrameSize, saltedData: false, &random)
        var decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        var frames: [Frame] = []
        var offset = 0
        var largestBuffer = 0
        while offset < stream.count {
            let capacity = decoder.readCapacity
            #expect(capacity >= 1)
            #expect(decoder.bufferedByteCount + capacity <= maxFrameSize + 65_536)
            let count = min(capacity, stream.count - offset)  // a reader that takes all it may
            decoder.append(Array(stream[offset..<(offset + count)]))
            offset += count
            largestBuffer = max(largestBuffer, decoder.bufferedByteCount)
            while let frame = try decoder.next() { frames.append(frame) }
        }
        #expect(frames == expected)
        #expect(largestBuffer <= maxFrameSize + 65_536)
        #expect(!decoder.isMidFrame)
    }

    /// Receiving straight into the decoder's storage, in pieces of random sizes and through
    /// requests of random sizes (up to 1 MiB, as the client asks), yields the stream's
    /// frames in order; the storage stays bounded however many receives there are.
    @Test func receiveIntoStorageYieldsTheSameFrames() throws {
        let maxFrameSize = 65_536
        var random = SplitMix64(seed: 7)
        let (stream, expected) = Self.sendStream(
            frames: 400, fullSizeEvery: 5, smallBelow: 3_000, maxFrameSize: maxFrameSize, saltedData: true, &random)
        var decoder = FrameDecoder(maxFrameSize: maxFrameSize, keptStorage: .max)
        var frames: [Frame] = []
        var offset = 0
        while offset < stream.count {
            let request = 1 + Int(random.next() % (1 << 20))
            let offered = 1 + Int(random.next() % UInt64(min(request, stream.count - offset)))
            let written = decoder.receive(upTo: request) { space in
                #expect(space.count == request)
                stream.withUnsafeBytes { bytes in
                    space.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + offered)]))
                }
                return offered
            }
            #expect(written == offered)
            offset += offered
            while let frame = try decoder.next() { frames.append(frame) }
        }
        #expect(frames == expected)
        #expect(!decoder.isMidFrame)
        #expect(decoder.bufferedByteCount == 0)
    }

    /// A byte stream of `frames` SEND frames and the frames themselves: every
    /// `fullSizeEvery`th as large as `maxFrameSize` allows (50 bytes: the SEND header and
    /// fields), the others with random data shorter than `smallBelow` bytes (`saltedData`:
    /// each frame's bytes offset by its index).
    static func sendStream(
        frames count: Int, fullSizeEvery: Int, smallBelow: UInt64, maxFrameSize: Int, saltedData: Bool, _ random: inout SplitMix64
    ) -> (stream: [UInt8], frames: [Frame]) {
        var stream: [UInt8] = []
        var frames: [Frame] = []
        for index in 0..<count {
            let size = index % fullSizeEvery == 0 ? maxFrameSize - 50 : Int(random.next() % smallBelow)
            let salt = saltedData ? index : 0
            let frame = Frame(operationID: UInt64(index), message: .send(SendInput(
                shellID: 1, commandID: 2, stream: "stdin", endOfStream: false,
                data: (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ salt) })))
            frame.encode(into: &stream)
            frames.append(frame)
        }
        return (stream, frames)
    }
}
