import AirlockPosix
import AirlockProtocol
import SystemPackage

/// Whom a client connection acts for: the peer `SO_PEERCRED` names, or the user a trusted
/// gateway asserted (`ASSERT_IDENTITY`, PROTOCOL.md §5.2).
struct PeerIdentity: Equatable {
    /// The peer process (the gateway's, for an asserted identity).
    var pid: Int32
    /// The user's uid; ``gatewayOnlyUID`` for a user known only to a gateway.
    var uid: UInt32
    var gid: UInt32
    var userName: String
    /// Supplementary groups, resolved lazily for access checks.
    var groups: [UInt32]
    /// Who owns shells and counts against per-user quotas: the uid, or a number above
    /// 2^32 that the supervisor gave a gateway-only user name.
    var principal: UInt64
    /// `WSMAN_SENDER_DETAILS.authenticationMechanism`.
    var authenticationMechanism = "UnixPeerCredentials"
    /// `WSMAN_SENDER_DETAILS.httpURL`; empty when none.
    var httpURL = ""
    /// The gateway's user name when the identity was asserted.
    var assertedBy: String? = nil

    /// The uid of a user that exists only at a gateway ((uid_t)-1, never a real account).
    static let gatewayOnlyUID = UInt32.max

    /// The peer of a local connection, as `SO_PEERCRED` reports it.
    init(pid: Int32, uid: UInt32, gid: UInt32, userName: String) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.userName = userName
        self.groups = []
        self.principal = UInt64(uid)
    }

    /// True for a user that exists only at a gateway (no uid, no groups).
    var isGatewayOnly: Bool { principal > UInt64(UInt32.max) }

    /// The name access lists and `Admins` match: `gateway:<name>` for a gateway-only user,
    /// so it is never mistaken for the system account of the same name.
    var accessName: String { isGatewayOnly ? "gateway:" + userName : userName }

    /// "user alice (uid 1000)", "gateway user bob (via airlock-wsman)".
    var described: String {
        if isGatewayOnly { return "gateway user \(userName) (via \(assertedBy ?? "a gateway"))" }
        return "user \(userName) (uid \(uid))"
    }
}

/// One client connection: its socket, the frame decoder, an output buffer and the
/// operations it has in flight.
final class ClientConnection {
    enum State {
        case awaitingHello
        case ready
        /// Sent an `ERROR` frame; closes once it is flushed.
        case closing
    }

    let id: UInt64
    let fd: FileDescriptor
    var token: UInt64 = 0
    /// Whom the connection acts for; changed once, by an accepted `ASSERT_IDENTITY`.
    var peer: PeerIdentity
    /// The uid `SO_PEERCRED` reported; connection limits count it, whatever ``peer`` becomes.
    let transportUID: UInt32
    /// True once an operation other than PING/STATUS/LIST_PLUGINS was accepted, or an identity asserted.
    var identityFixed = false
    var state: State = .awaitingHello
    /// True until the supervisor drops the connection (its socket is then closed): the
    /// cheap "is it still there" check, instead of a lookup in the connection table.
    var isOpen = true
    var decoder: FrameDecoder
    let acceptedAt: UInt64

    /// Bytes waiting to be written, from `outputStart` on.
    var output = ByteWriter(reservingCapacity: 16)
    var outputStart = 0
    var wantsWritable = false
    var readingPaused = false
    var isDirty = false

    /// Set when credit of an operation of this connection was held back (its output was
    /// queued); ``Supervisor/releaseDeferredCredits(_:)`` looks only at such connections.
    var mayHoldCredit = false

    /// Workers whose ring holds a large result for this connection until its queued
    /// output is written: their drains resume then (or when it closes).
    var ringsAwaitingOutput: [PluginRuntime] = []

    /// The client's result ring, once an `OPEN_RESULT_RING` was accepted (PROTOCOL.md §5.6).
    var resultRing: ServerResultRing?
    /// A descriptor passed with the client's bytes, kept for the next `OPEN_RESULT_RING`.
    var passedDescriptor: FileDescriptor?

    /// When the connection entered the middle of a frame (0 = not mid-frame).
    var midFrameSince: UInt64 = 0

    /// The client's operation id → the worker route carrying it (or 0 for operations
    /// that do not reach a worker).
    var operations: [UInt64: OperationKey] = [:]
    /// Shells this connection is attached to.
    var shells: Set<UInt64> = []

    /// Output at or above this pauses credits to workers; below ``lowWatermark`` they resume.
    static let highWatermark = 1 << 20
    static let lowWatermark = 256 << 10
    /// An output buffer up to this capacity is kept when it empties (a streaming client
    /// reuses it instead of growing a new one, page by page, for every burst).
    static let keptOutputCapacity = 8 << 20

    init(id: UInt64, fd: FileDescriptor, peer: PeerIdentity, now: UInt64) {
        self.id = id
        self.fd = fd
        self.peer = peer
        self.transportUID = peer.uid
        self.acceptedAt = now
        self.decoder = FrameDecoder(maxFrameSize: ProtocolLimits.handshakeMaxFrameSize)
    }

    var pendingOutput: Int { output.count - outputStart }

    /// Queues an encoded frame; it is written at the end of the current event batch.
    func enqueue(encoded frame: UnsafeRawBufferPointer) {
        startAppending()
        output.append(frame)
        isDirty = true
    }

    /// Frames at least this large are written straight from where they are, when
    /// nothing is queued ahead of them, instead of being copied into ``output`` first.
    static let directWriteThreshold = 16 << 10

    /// Writes a complete encoded frame (a relayed result, header already rewritten) at
    /// once when nothing is queued ahead of it and it is large, so the bytes are not copied
    /// into ``output``; whatever the socket does not take (or all of it, for small frames,
    /// output already queued, or a failed write: ``flush()`` then reports the failure) is
    /// queued.
    func enqueueOrWrite(_ frame: UnsafeRawBufferPointer) {
        var written = 0
        if pendingOutput == 0 && frame.count >= Self.directWriteThreshold {
            written = (try? Posix.send(fd, frame, flags: [.dontWait])) ?? 0
        }
        if written < frame.count {
            startAppending()
            output.append(UnsafeRawBufferPointer(rebasing: frame[written...]))
        }
        isDirty = true
    }

    /// ``enqueueOrWrite(_:)`` of a frame in three parts, sent with one `sendmsg` (each part
    /// copied once, by the kernel); what the socket does not take is queued.
    func enqueueOrWrite(_ head: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer, _ tail: UnsafeRawBufferPointer) {
        var written = 0
        if pendingOutput == 0 && head.count + data.count + tail.count >= Self.directWriteThreshold {
            written = (try? Posix.send(fd, head, data, tail, flags: [.dontWait])) ?? 0
        }
        var skipped = 0
        for part in [head, data, tail] {
            let from = min(max(written - skipped, 0), part.count)
            skipped += part.count
            guard from < part.count else { continue }
            startAppending()
            output.append(UnsafeRawBufferPointer(rebasing: part[from...]))
        }
        isDirty = true
    }

    /// Empties the output buffer when everything queued was written, keeping its memory
    /// up to ``keptOutputCapacity``.
    private func startAppending() {
        if outputStart > 0 && outputStart == output.count {
            output.removeAll(keepingCapacity: Self.keptOutputCapacity)
            outputStart = 0
        }
    }

    /// Writes as much queued output as the socket takes. Returns false when the
    /// connection is broken.
    func flush() -> Bool {
        isDirty = false
        while outputStart < output.count {
            let written: Int?
            do {
                written = try output.withUnsafeBytes { buffer throws(SystemCallError) in
                    try Posix.send(fd, UnsafeRawBufferPointer(rebasing: buffer[outputStart...]), flags: [.dontWait])
                }
            } catch {
                return false
            }
            guard let written else { break }
            outputStart += written
        }
        if outputStart == output.count {
            output.removeAll(keepingCapacity: Self.keptOutputCapacity)
            outputStart = 0
        } else if outputStart > 1 << 20 && outputStart >= output.count - outputStart {
            // Compact once the written part is at least as large as what is left, so
            // each byte is moved at most once on average.
            output.removeFirst(outputStart)
            outputStart = 0
        }
        return true
    }
}

/// Identifies an operation on a worker: the plug-in's worker generation and the
/// supervisor's operation id on that worker's channel.
struct OperationKey: Hashable {
    var plugin: String
    var workerOperationID: UInt64
}
