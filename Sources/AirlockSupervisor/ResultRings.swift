import AirlockPosix
import AirlockProtocol

/// A client's result ring (PROTOCOL.md §5.6): the memory file the client offered, mapped
/// for writing, and where the next result goes. The supervisor writes large results' data
/// here and sends only a short `RECEIVE_RESULT_IN_RING` through the socket.
final class ServerResultRing {
    let fd: FileDescriptor
    let memory: SharedMemory
    var cursor: ResultRingCursor

    init(fd: FileDescriptor, memory: SharedMemory, size: Int) {
        self.fd = fd
        self.memory = memory
        self.cursor = ResultRingCursor(size: size)
    }

    /// Frees the ring's pages (a client still mapping it reads zeros) and closes the file.
    func close() {
        try? MemoryFile.punchHole(fd, offset: 0, length: cursor.size)
        try? Posix.close(fd)
    }
}

extension Supervisor {
    /// Takes the descriptors a receive brought (only `OPEN_RESULT_RING` may carry one):
    /// keeps one for the next `OPEN_RESULT_RING`. Returns false, having closed the
    /// connection with a protocol error, when more came.
    func acceptPassedDescriptors(_ passed: Posix.PassedDescriptors, from connection: ClientConnection) -> Bool {
        var descriptors = passed.descriptors[...]
        if !passed.truncated && connection.passedDescriptor == nil && descriptors.count == 1 {
            connection.passedDescriptor = descriptors.removeFirst()
            return true
        }
        for fd in descriptors { try? Posix.close(fd) }
        closeWithError(
            connection, code: WSManError.invalidParameter,
            message: "a descriptor was passed (SCM_RIGHTS) that no OPEN_RESULT_RING takes: one descriptor may travel with each OPEN_RESULT_RING frame, and with nothing else (PROTOCOL.md §5.6)")
        return false
    }

    /// `OPEN_RESULT_RING`: checks the offered memory file and maps it, or says why not.
    func openResultRing(size: UInt32, op: UInt64, from connection: ClientConnection) {
        let passed = connection.passedDescriptor
        connection.passedDescriptor = nil
        func refuse(_ reason: String) {
            if let passed { try? Posix.close(passed) }
            complete(connection.id, op, code: WSManError.invalidParameter, message: "result ring refused: \(reason); results travel through the socket (PROTOCOL.md §5.6)")
        }
        guard let fd = passed else {
            return refuse("OPEN_RESULT_RING came without a memory file's descriptor (attach it with SCM_RIGHTS to the sendmsg carrying the frame's first byte)")
        }
        guard connection.resultRing == nil else { return refuse("this connection has a result ring already") }
        let maximum = config.maxResultRingBytes
        guard maximum > 0 else { return refuse("result rings are turned off on this server (MaxResultRingkb 0)") }
        let bytes = Int(size)
        guard bytes % ResultRingCursor.sizeGranularity == 0, (ResultRingCursor.minimumSize...maximum).contains(bytes) else {
            return refuse("its size, \(bytes) bytes, must be a multiple of 4096 from \(ResultRingCursor.minimumSize) to \(maximum) bytes (MaxResultRingkb)")
        }
        do throws(SystemCallError) {
            guard try MemoryFile.isOnTmpfs(fd) else {
                return refuse("the descriptor is not a memory file (memfd_create, without MFD_HUGETLB)")
            }
            let fileSize = try MemoryFile.size(fd)
            guard fileSize >= bytes else { return refuse("the memory file has \(fileSize) bytes, fewer than the \(bytes) offered") }
            guard try MemoryFile.seals(fd).contains(.shrink) else {
                return refuse("the memory file is not sealed against shrinking (F_ADD_SEALS F_SEAL_SHRINK): the server cannot write into memory that may vanish")
            }
            let memory = try SharedMemory.map(fd, size: bytes)
            connection.resultRing = ServerResultRing(fd: fd, memory: memory, size: bytes)
        } catch {
            return refuse("the memory file cannot be used: \(error)")
        }
        complete(connection.id, op, code: 0, message: "")
    }

    /// `RELEASE_RESULT_RING`: ring space the client has read; results held for it resume.
    func releaseResultRing(to position: UInt64, from connection: ClientConnection) {
        guard let ring = connection.resultRing else {
            return closeWithError(connection, code: WSManError.invalidParameter, message: "RELEASE_RESULT_RING on a connection without a result ring")
        }
        do throws(ProtocolError) {
            try ring.cursor.release(to: position)
        } catch {
            return closeWithError(connection, code: error.code, message: error.message)
        }
        resumeHeldRings(of: connection)
    }

    /// Writes `data` into the connection's result ring and queues the `RECEIVE_RESULT_IN_RING`
    /// standing for the binary result whose encoded frame is `head`, the data, then `tail`
    /// (as a worker sent it: `head` ends with the data's kind and length). False when the
    /// connection has no ring or it has no room now.
    func queueInResultRing(
        head: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer, tail: UnsafeRawBufferPointer, operationID: UInt64,
        on connection: ClientConnection
    ) -> Bool {
        guard let ring = connection.resultRing, let position = ring.cursor.place(data.count) else { return false }
        let offset = Int(position % UInt64(ring.cursor.size))
        (ring.memory.base + offset).copyMemory(from: data.baseAddress!, byteCount: data.count)
        encodeFrame { w in
            w.u32(0)
            w.u16(MessageType.receiveResultInRing.rawValue)
            w.u16(0)
            w.u64(operationID)
            // The result's flags and stream, as the worker encoded them.
            w.append(UnsafeRawBufferPointer(rebasing: head[ProtocolLimits.headerSize..<(head.count - 5)]))
            w.u64(position)
            w.u32(UInt32(data.count))
            w.append(tail)
            w.patchU32(at: 0, UInt32(w.count - 4))
        }
        queueEncoded(on: connection)
        return true
    }
}
