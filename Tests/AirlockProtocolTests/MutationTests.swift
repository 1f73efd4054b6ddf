import AirlockProtocol
import Testing

/// A seeded fuzzer inside the regular test run: mutated golden frames (client and worker
/// frames alike) must satisfy ``CodecProperties`` and never trap. libFuzzer
/// (`Tests/Fuzz/run-fuzz.sh`) explores further; this keeps the basics in every run.
@Suite struct MutationTests {
    static let seeds = VectorFile.load("frames.txt").map(\.bytes)
    static let invalid = VectorFile.load("invalid.txt").map(\.bytes)

    /// Values that tend to sit on a boundary of some check.
    static let interestingU32: [UInt32] = [0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 16, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF,
                                           0x1_0000, 65_532, 65_536, 511_996, 512_000, 0x7FFF_FFFF, 0x8000_0000,
                                           0xFFFF_FFFE, 0xFFFF_FFFF]
    static let interestingBytes: [UInt8] = [0, 1, 2, 3, 4, 5, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF4, 0xF5, 0xFE, 0xFF]

    /// One random change to `bytes`.
    static func mutate(_ bytes: inout [UInt8], _ random: inout SplitMix64) {
        func position(_ extra: Int = 0) -> Int { Int(random.next() % UInt64(bytes.count + extra)) }
        switch bytes.isEmpty ? 4 : random.next() % 10 {
        case 0:  // flip one bit
            bytes[position()] ^= 1 << UInt8(random.next() % 8)
        case 1:  // an interesting byte
            bytes[position()] = interestingBytes[Int(random.next() % UInt64(interestingBytes.count))]
        case 2:  // an interesting u32 (a count, a length) at any offset
            let value = interestingU32[Int(random.next() % UInt64(interestingU32.count))]
            let at = position()
            for i in 0..<4 where at + i < bytes.count { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
        case 3:  // delete a range
            let at = position()
            bytes.removeSubrange(at..<min(bytes.count, at + Int(random.next() % 9) + 1))
        case 4:  // insert random bytes
            let at = position(1)
            bytes.insert(contentsOf: (0..<Int(random.next() % 9) + 1).map { _ in UInt8(truncatingIfNeeded: random.next()) }, at: at)
        case 5:  // duplicate a range (repeats a list element, a field)
            let at = position()
            let range = at..<min(bytes.count, at + Int(random.next() % 24) + 1)
            bytes.insert(contentsOf: bytes[range], at: position(1))
        case 6:  // truncate
            bytes.removeLast(Int(random.next() % UInt64(bytes.count)) + 1)
        case 7:  // splice with another seed
            let other = seeds[Int(random.next() % UInt64(seeds.count))]
            let cut = position()
            bytes = Array(bytes[0..<cut]) + other[Int(random.next() % UInt64(other.count))...]
        case 8:  // change the message type to another valid one: same bytes, other schema
            if bytes.count >= 6 {
                let type = MessageType.allCases[Int(random.next() % UInt64(MessageType.allCases.count))].rawValue
                bytes[4] = UInt8(truncatingIfNeeded: type)
                bytes[5] = UInt8(truncatingIfNeeded: type >> 8)
            }
        default:  // increment or decrement a byte (counts off by one)
            let at = position()
            bytes[at] = random.next() % 2 == 0 ? bytes[at] &+ 1 : bytes[at] &- 1
        }
    }

    /// Rewrites the length prefix to the frame's size, so the payload decoder is reached.
    static func fitLength(_ bytes: inout [UInt8]) {
        guard bytes.count >= 4 else { return }
        let length = UInt32(truncatingIfNeeded: bytes.count - 4)
        for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(i))) }
    }

    @Test func goldenAndInvalidVectorsSatisfyTheProperties() {
        for bytes in Self.seeds + Self.invalid {
            #expect(CodecProperties.violations(in: bytes) == [], "\(bytes.hex)")
            #expect(CodecProperties.violations(in: bytes, maxFrameSize: ProtocolLimits.defaultMaxFrameSize) == [])
        }
        // All the frames as one stream, and twice over.
        let stream = Self.seeds.flatMap { $0 }
        #expect(CodecProperties.violations(in: stream) == [])
        #expect(CodecProperties.violations(in: stream + stream) == [])
    }

    @Test(arguments: [UInt64(1), 2, 3, 4])
    func mutatedFramesNeverBreakTheDecoder(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var accepted = 0
        var rejected = 0
        for _ in 0..<1_500 {
            var bytes = Self.seeds[Int(random.next() % UInt64(Self.seeds.count))]
            for _ in 0..<(Int(random.next() % 4) + 1) { Self.mutate(&bytes, &random) }
            if random.next() % 4 != 0 { Self.fitLength(&bytes) }
            let problems = CodecProperties.violations(in: bytes)
            if !problems.isEmpty {
                Issue.record("seed \(seed): \(problems) for \(bytes.hex)")
                return
            }
            if (try? Frame.decode(bytes, maxFrameSize: CodecProperties.maxFrameSize)) != nil {
                accepted += 1
            } else {
                rejected += 1
            }
        }
        // Both outcomes occur, so mutations reach past the header checks.
        #expect(accepted > 0)
        #expect(rejected > 0)
    }

    @Test func mutatedStreamsOfSeveralFramesNeverBreakTheDecoder() {
        var random = SplitMix64(seed: 0xA1_4C0C)
        for _ in 0..<500 {
            var stream: [UInt8] = []
            for _ in 0..<(Int(random.next() % 6) + 2) {
                var frame = Self.seeds[Int(random.next() % UInt64(Self.seeds.count))]
                if random.next() % 3 == 0 {
                    Self.mutate(&frame, &random)
                    if random.next() % 2 == 0 { Self.fitLength(&frame) }
                }
                stream += frame
            }
            let problems = CodecProperties.violations(in: stream)
            if !problems.isEmpty {
                Issue.record("\(problems) for \(stream.hex)")
                return
            }
        }
    }
}
