import AirlockPosix
import AirlockProtocol

/// The connection's result ring (PROTOCOL.md §5.6): a memory file this process created,
/// sealed against shrinking and mapped read-only here, that `airlockd` maps to write large
/// results into. A result then reaches this process as two memory copies (airlockd's into
/// the ring, this side's out of it) instead of a socket send and receive.
///
/// The mapping is shared by whoever reads the socket; ``cursor`` is touched only by the
/// thread that owns the reading side (the reader thread, or a blocking consumer reading
/// for itself), which the read side's ownership protocol keeps to one at a time.
final class ClientResultRing: @unchecked Sendable {
    let memory: SharedMemory
    /// Where the next result may lie, and what was released; the reading thread's.
    var cursor: ResultRingCursor
    /// A release is sent once this many bytes were read since the last one: a quarter ring.
    var releaseBatch: Int { cursor.size / 4 }

    private init(memory: SharedMemory, size: Int) {
        self.memory = memory
        self.cursor = ResultRingCursor(size: size)
    }

    /// Creates the memory file (`size` bytes, sealed `F_SEAL_SHRINK | F_SEAL_GROW |
    /// F_SEAL_SEAL`) and maps it read-only. Returns the ring and the descriptor to pass
    /// with `OPEN_RESULT_RING` (close it once sent).
    static func create(size: Int) throws(SystemCallError) -> (ClientResultRing, FileDescriptor) {
        let fd = try MemoryFile.create(name: "airlock-results", size: size)
        do throws(SystemCallError) {
            let memory = try SharedMemory.mapReadOnly(fd, size: size)
            return (ClientResultRing(memory: memory, size: size), fd)
        } catch {
            try? Posix.close(fd)
            throw error
        }
    }

    /// Checks a `RECEIVE_RESULT_IN_RING` against the ring's rules and copies its bytes out,
    /// into the array the ``OutputChunk`` will hold.
    func take(_ result: RingReceiveResult) throws(ProtocolError) -> ReceiveResult {
        let offset = try cursor.accept(position: result.position, length: result.length)
        let count = Int(result.length)
        let source = memory.base + offset
        let data = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: source, byteCount: count) }
            initialized = count
        }
        return result.receiveResult(data: data)
    }
}
