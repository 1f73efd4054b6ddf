import AirlockClient
import Testing

/// The worker channel's rings end to end: output far larger than a ring crosses it whole
/// and in order, whether its results are relayed in place from the ring or copied out
/// (where a result wraps around the ring's end).
@Suite("Worker channel rings")
struct ChannelRingTests {
    @Test("six MiB through cat: every byte arrives, in order, while the rings wrap many times")
    func largeOutputCrossesTheRings() async throws {
        try await Daemon.with { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            let command = try await shell.run("cat")
            // A pattern that no shifted or repeated block matches: a byte of each block's
            // number, then a running counter.
            let total = 6 << 20
            var input = [UInt8](repeating: 0, count: total)
            for index in 0..<total { input[index] = UInt8(truncatingIfNeeded: index &* 7 &+ index >> 16) }
            async let output = command.collectOutput()
            var offset = 0
            var step = 0
            while offset < total {
                // Uneven sends: results of many sizes, so records straddle the ring's end.
                let size = min([200_000, 333_333, 61_440, 250_001][step % 4], total - offset)
                try await command.send(Array(input[offset..<(offset + size)]))
                offset += size
                step += 1
            }
            try await command.send([], endOfStream: true)
            let collected = try await output
            #expect(collected.stdout.count == total)
            if let first = zip(collected.stdout, input).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
                Issue.record("the output differs from the input first at byte \(first.offset)")
            }
            #expect(collected.exitCode == 0)
            try await shell.close()
        }
    }
}
