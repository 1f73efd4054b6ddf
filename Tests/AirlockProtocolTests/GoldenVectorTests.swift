import AirlockProtocol
import Testing

/// `proto/vectors/frames.txt` against ``GoldenFrames``, in both directions.
@Suite struct GoldenVectorTests {
    static let vectors = VectorFile.load("frames.txt")
    static let vectorsByName = Dictionary(uniqueKeysWithValues: vectors.map { ($0.name, $0) })
    static let names = GoldenFrames.all.map(\.name)

    static func expected(_ name: String) -> Frame {
        GoldenFrames.all.first { $0.name == name }!.frame
    }

    @Test func everyVectorHasAnExpectedFrameAndViceVersa() {
        #expect(Self.vectors.map(\.name) == Self.names)
        #expect(Set(Self.names).count == Self.names.count, "duplicate names")
    }

    @Test func everyMessageTypeHasAVector() {
        let covered = Set(GoldenFrames.all.map(\.frame.message.type))
        let missing = MessageType.allCases.filter { !covered.contains($0) }.map(\.wireName)
        #expect(missing.isEmpty, "no golden vector for \(missing)")
    }

    @Test("decode(vector) == expected frame", arguments: names)
    func decodes(_ name: String) throws {
        let vector = try #require(Self.vectorsByName[name])
        let frame = try Frame.decode(vector.bytes, maxFrameSize: ProtocolLimits.defaultMaxFrameSize)
        #expect(frame == Self.expected(name))
    }

    @Test("encode(expected frame) == vector", arguments: names)
    func encodes(_ name: String) throws {
        let vector = try #require(Self.vectorsByName[name])
        let bytes = Self.expected(name).encoded()
        #expect(bytes == vector.bytes, "encoded \(bytes.hex)\nexpected \(vector.bytes.hex)")
        // Appending to existing bytes leaves them alone.
        var prefixed: [UInt8] = [0xAA, 0xBB]
        Self.expected(name).encode(into: &prefixed)
        #expect(prefixed == [0xAA, 0xBB] + vector.bytes)
    }

    /// Byte offsets PROTOCOL.md §2 gives, read by hand from one vector.
    @Test func headerOffsetsAreLittleEndian() throws {
        let bytes = try #require(Self.vectorsByName["pong"]).bytes
        #expect(bytes.count == 24)
        #expect(Array(bytes[0..<4]) == [20, 0, 0, 0])  // length = 24 - 4
        #expect(Array(bytes[4..<6]) == [0x04, 0x00])  // PONG
        #expect(Array(bytes[6..<8]) == [0x01, 0x00])  // FINAL
        #expect(Array(bytes[8..<16]) == [3, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[16..<24]) == [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01])
        let hello = try #require(Self.vectorsByName["hello"]).bytes
        #expect(Array(hello[16..<20]) == Array("ARLK".utf8))
    }

    @Test func everyVectorDecodesAsOneStreamWholeAndByteByByte() throws {
        let stream = Self.vectors.flatMap(\.bytes)
        let expected = GoldenFrames.all.map(\.frame)

        var whole = FrameDecoder(maxFrameSize: ProtocolLimits.defaultMaxFrameSize)
        whole.append(stream)
        var frames: [Frame] = []
        while let frame = try whole.next() { frames.append(frame) }
        Self.expectSame(frames, expected)
        #expect(!whole.isMidFrame)

        var single = FrameDecoder(maxFrameSize: ProtocolLimits.defaultMaxFrameSize)
        frames = []
        var frameStart = 0
        for (index, byte) in stream.enumerated() {
            single.append([byte])
            if let frame = try single.next() {
                frames.append(frame)
                frameStart = index + 1
                #expect(try single.next() == nil)
            } else {
                #expect(single.isMidFrame)
                #expect(single.bufferedByteCount == index + 1 - frameStart)
            }
        }
        Self.expectSame(frames, expected)
        #expect(!single.isMidFrame)
    }

    /// Compares frame lists one by one, naming the vector of the first difference.
    static func expectSame(_ frames: [Frame], _ expected: [Frame], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(frames.count == expected.count, sourceLocation: sourceLocation)
        if let index = zip(frames, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            Issue.record("frame \(index) [\(names[index])] differs: \(frames[index])", sourceLocation: sourceLocation)
        }
    }

    @Test("a frame of exactly maxFrameSize bytes is accepted, one byte less is not", arguments: names)
    func limitIsInclusive(_ name: String) throws {
        let bytes = try #require(Self.vectorsByName[name]).bytes
        #expect(try Frame.decode(bytes, maxFrameSize: bytes.count) == Self.expected(name))
        #expect(throws: ProtocolError.oversized(bytes.count, limit: bytes.count - 1)) {
            try Frame.decode(bytes, maxFrameSize: bytes.count - 1)
        }
        var decoder = FrameDecoder(maxFrameSize: bytes.count - 1)
        decoder.append(Array(bytes[0..<4]))
        #expect(throws: ProtocolError.oversized(bytes.count, limit: bytes.count - 1)) { try decoder.next() }
    }

    @Test func decodingARangeOfALargerBuffer() throws {
        let bytes = try #require(Self.vectorsByName["signal"]).bytes
        let buffer = [0xFF, 0xFF, 0xFF] + bytes + [0xFF]
        let frame = try Frame.decode(buffer, range: 3..<(3 + bytes.count), maxFrameSize: 4096)
        #expect(frame == Self.expected("signal"))
    }

    /// Strings are carried byte for byte: no normalization, every scalar at the edges
    /// of the UTF-8 length classes survives.
    @Test func stringsRoundTripByteForByte() throws {
        let samples = [
            "\u{1}", "\u{7F}", "\u{80}", "\u{7FF}", "\u{800}", "\u{D7FF}", "\u{E000}", "\u{FEFF}BOM", "\u{FFFD}",
            "\u{FFFF}", "\u{10000}", "\u{10FFFF}", "e\u{301}", "\u{E9}", "🇩🇪", "👩‍👩‍👧",
        ]
        for sample in samples {
            let frame = Frame(operationID: 1, message: .status(plugin: sample))
            let bytes = frame.encoded()
            #expect(Array(bytes[20...]) == Array(sample.utf8))
            let decoded = try Frame.decode(bytes, maxFrameSize: 4096)
            guard case .status(let plugin) = decoded.message else {
                Issue.record("decoded \(decoded.message.type.wireName)")
                continue
            }
            #expect(Array(plugin.utf8) == Array(sample.utf8))
        }
    }
}
