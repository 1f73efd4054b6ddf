import AirlockChannel
import AirlockPosix
import Foundation
import Glibc
import Testing

/// The rings of the worker channel, on real shared memory: records in order and whole,
/// wrap-around, a full ring, and every kind of corruption a plug-in could cause.
@Suite struct FrameRingTests {
    static let capacity = 64 << 10

    static func region() throws -> ChannelRegion {
        let (region, fd) = try ChannelRegion.create(toWorker: capacity, toSupervisor: capacity)
        try Posix.close(fd)
        return region
    }

    /// Record `index`: its number in its first bytes, then a byte that depends on it.
    static func record(_ index: Int, size: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: index &* 31 &+ 7), count: size)
        for position in 0..<min(size, 4) { bytes[position] = UInt8(truncatingIfNeeded: index >> (8 * position)) }
        return bytes
    }

    @Test func recordsArriveWholeAndInOrderAcrossTheWrap() throws {
        let region = try Self.region()
        var producer = RingProducer(region.toWorker)
        var consumer = RingConsumer(region.toWorker)
        var buffer = [UInt8](repeating: 0, count: 70_000)
        // Sizes that are not multiples of 8 walk the records across the end many times.
        for index in 0..<600 {
            let record = Self.record(index, size: (index * 977) % 9_000 + 1)
            #expect(try record.withUnsafeBytes { try producer.write($0) })
            let result = try buffer.withUnsafeMutableBytes { try consumer.read(into: $0) }
            guard case .record(let size) = result else {
                Issue.record("record \(index): \(result)")
                return
            }
            #expect(Array(buffer[0..<size]) == record, "record \(index)")
            consumer.publish()
        }
        guard case .empty = try buffer.withUnsafeMutableBytes({ try consumer.read(into: $0) }) else {
            Issue.record("the ring is not empty after every record was read")
            return
        }
    }

    @Test func aRecordInPartsIsOneRecord() throws {
        let region = try Self.region()
        var producer = RingProducer(region.toSupervisor)
        var consumer = RingConsumer(region.toSupervisor)
        let head: [UInt8] = [1, 2, 3], data = [UInt8](repeating: 9, count: 1000), tail: [UInt8] = [7]
        let written = try head.withUnsafeBytes { h in
            try data.withUnsafeBytes { d in try tail.withUnsafeBytes { t in try producer.write(h, d, t) } }
        }
        #expect(written)
        var buffer = [UInt8](repeating: 0, count: 2000)
        guard case .record(let size) = try buffer.withUnsafeMutableBytes({ try consumer.read(into: $0) }) else {
            Issue.record("no record")
            return
        }
        #expect(Array(buffer[0..<size]) == head + data + tail)
    }

    @Test func aFullRingTakesNothingUntilSpaceIsPublished() throws {
        let region = try Self.region()
        var producer = RingProducer(region.toWorker)
        var consumer = RingConsumer(region.toWorker)
        let record = [UInt8](repeating: 1, count: 16_376)  // footprint 16 KiB: four fill the ring
        for _ in 0..<4 { #expect(try record.withUnsafeBytes { try producer.write($0) }) }
        #expect(try !record.withUnsafeBytes { try producer.write($0) })
        var buffer = [UInt8](repeating: 0, count: 20_000)
        _ = try buffer.withUnsafeMutableBytes { try consumer.read(into: $0) }
        // Read but not published: the producer still sees the ring full.
        #expect(try !record.withUnsafeBytes { try producer.write($0) })
        consumer.publish()
        #expect(try record.withUnsafeBytes { try producer.write($0) })
        #expect(throws: RingError.self) {
            try [UInt8](repeating: 0, count: Self.capacity).withUnsafeBytes { try producer.write($0) }
        }
    }

    @Test func aRecordLargerThanTheBufferIsReportedAndSkipped() throws {
        let region = try Self.region()
        var producer = RingProducer(region.toSupervisor)
        var consumer = RingConsumer(region.toSupervisor)
        #expect(try [UInt8](repeating: 1, count: 5000).withUnsafeBytes { try producer.write($0) })
        #expect(try [UInt8](repeating: 2, count: 10).withUnsafeBytes { try producer.write($0) })
        var small = [UInt8](repeating: 0, count: 100)
        guard case .oversized(5000) = try small.withUnsafeMutableBytes({ try consumer.read(into: $0) }),
              case .record(10) = try small.withUnsafeMutableBytes({ try consumer.read(into: $0) })
        else {
            Issue.record("expected an oversized record, then the next one")
            return
        }
        #expect(small[0..<10].allSatisfy { $0 == 2 })
    }

    /// What a plug-in with a stray pointer could write to the words the supervisor reads.
    @Test(arguments: ["tail beyond the capacity", "tail inside a header", "length beyond the tail", "head beyond the tail"])
    func corruptionIsAnErrorNeverACrash(kind: String) throws {
        let region = try Self.region()
        var producer = RingProducer(region.toSupervisor)
        var consumer = RingConsumer(region.toSupervisor)
        #expect(try [UInt8](repeating: 1, count: 100).withUnsafeBytes { try producer.write($0) })
        let words = region.memory.base + 64
        func word(_ index: Int) -> UnsafeMutablePointer<UInt32> { (words + 64 * index).assumingMemoryBound(to: UInt32.self) }
        var buffer = [UInt8](repeating: 0, count: 1000)
        switch kind {
        case "tail beyond the capacity": word(4).pointee = UInt32(Self.capacity + 8)
        case "tail inside a header": word(4).pointee = 4
        case "length beyond the tail": (region.memory.base + ChannelRegion.headerSize + Self.capacity).storeBytes(of: UInt32(500), as: UInt32.self)
        default:
            // The consumer's published head (which the producer trusts for space) jumps ahead.
            word(5).pointee = 0x8000_0000
            #expect(throws: RingError.self) { try [UInt8](repeating: 1, count: 8).withUnsafeBytes { try producer.write($0) } }
            return
        }
        #expect(throws: RingError.self) { try buffer.withUnsafeMutableBytes { try consumer.read(into: $0) } }
    }

    @Test func aRegionIsCheckedBeforeItIsUsed() throws {
        let (_, fd) = try ChannelRegion.create(toWorker: Self.capacity, toSupervisor: Self.capacity)
        defer { try? Posix.close(fd) }
        #expect(try ChannelRegion.attach(fd).toSupervisor.capacity == Self.capacity)
        let (memory, other) = try SharedMemory.create(name: "not-a-channel", size: 8192)
        defer { try? Posix.close(other) }
        memory.base.storeBytes(of: UInt32(0x1234), as: UInt32.self)
        #expect(throws: ChannelRegionError.self) { try ChannelRegion.attach(other) }
        let pipe = try Posix.pipe()
        defer { try? Posix.close(pipe.read); try? Posix.close(pipe.write) }
        #expect(throws: ChannelRegionError.self) { try ChannelRegion.attach(pipe.read) }
    }

    /// A producer and a consumer thread that sleep on the futexes: a full ring blocks the
    /// producer until the consumer frees space, an empty one the consumer until a record.
    /// (Plain threads: blocking a Swift concurrency pool thread could starve the other.)
    @Test func threadsWaitForSpaceAndForRecords() async throws {
        let region = try Self.region()
        let count = 4_000
        async let received = Self.onPlainThread { () -> Int in
            var consumer = RingConsumer(region.toWorker)
            var buffer = [UInt8](repeating: 0, count: 20_000)
            var received = 0
            while received < count {
                guard let result = try? buffer.withUnsafeMutableBytes({ try consumer.read(into: $0) }) else { return -1 }
                switch result {
                case .empty(let tail):
                    region.toWorker.waitForRecords(after: tail)
                case .record(let size):
                    guard Array(buffer[0..<size]) == Self.record(received, size: size) else { return -2 }
                    received += 1
                    consumer.publish()
                    if consumer.producerIsWaiting { consumer.wakeProducer() }
                case .oversized:
                    return -3
                }
            }
            return received
        }
        let sent = await Self.onPlainThread { () -> Int in
            var producer = RingProducer(region.toWorker)
            for index in 0..<count {
                let record = Self.record(index, size: index % 7 == 0 ? 15_000 + index % 5 : index % 300 + 1)
                do {
                    while try !record.withUnsafeBytes({ try producer.write($0) }) {
                        try producer.waitForSpace(forRecord: record.count)
                    }
                } catch {
                    return -1
                }
                if producer.consumersAreWaiting { producer.wakeConsumer() }
            }
            return count
        }
        #expect(sent == count)
        #expect(await received == count)
    }

    static func onPlainThread(_ body: @escaping @Sendable () -> Int) async -> Int {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: body()) }
        }
    }
}
