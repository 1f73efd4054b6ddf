import AirlockPosix
import AirlockProtocol
import Glibc
import Synchronization

/// Starts detached POSIX threads (the worker uses no Dispatch and no Swift concurrency:
/// plug-in code runs on these threads, and each one is counted as the worker's own).
enum WorkerThread {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// The stack of each worker thread: plug-in entry points run on it. Twice the 1 MiB
    /// a Windows thread gets by default (what plug-ins are written for), and small enough
    /// that 32 readers stay well inside the sandbox's memory limit (`RLIMIT_DATA` counts
    /// thread stacks), unlike glibc's default of `RLIMIT_STACK` (8 MiB).
    static let stackSize = 2 << 20

    /// Starts `body` on a new detached thread; false when `pthread_create` fails.
    static func start(_ body: @escaping () -> Void) -> Bool {
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, stackSize)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { argument in
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, box)
        if result != 0 {
            Unmanaged<Body>.fromOpaque(box).release()
            errno = result
            return false
        }
        return true
    }
}

/// The threads that receive from the channel. Each takes one request from the ring (idle
/// ones sleep on it, and each request wakes one of them) and serves it itself, calling the plug-in's entry point on its own stack: no hand-off on the
/// hot path. When a reader takes a frame and no other reader is left waiting, it starts
/// one first, so an entry point that never returns blocks neither the channel nor other
/// operations (up to ``maximumReaders``).
final class ReaderPool: Sendable {
    /// The most readers: beyond it, a plug-in whose entry points never return stalls
    /// the channel (and the supervisor's heartbeat notices).
    static let maximumReaders = 32

    let host: PluginHost
    /// Readers waiting for a request right now.
    private let idle = Atomic<Int>(0)
    /// Readers started, the thread that calls ``run(onNewThread:)`` first included.
    private let started = Atomic<Int>(1)
    /// Bytes per receive buffer: the largest frame plus room to detect a larger packet.
    private let bufferSize: Int

    init(host: PluginHost) {
        self.host = host
        bufferSize = host.maxEnvelopeSize + 8192
    }

    /// Starts one more reader thread (on top of the caller, which becomes a reader with
    /// ``run(onNewThread:)``), so a reader is waiting whenever the first one is busy.
    func startSpare() {
        _ = started.add(1, ordering: .relaxed)
        if !host.startOwnThread({ self.run(onNewThread: true) }) {
            _ = started.subtract(1, ordering: .relaxed)
        }
    }

    /// Makes the calling thread a reader, forever (`onNewThread`: a thread started with
    /// ``PluginHost/startOwnThread(_:)``).
    func run(onNewThread: Bool) -> Never {
        host.registerCurrentThread(started: onNewThread)
        try? ProcessControl.setName("airlock-reader")
        // The thread's own receive buffer, for as long as it lives (forever): requests are
        // read in place from it.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        // The recycled operation the next request is laid out in (see PluginHost.start).
        var spare: Operation?
        // The supervisor adds a request context (at most ~2.5 KiB: it bounds the resource URI and
        // locales) to a client frame of up to the maximum size.
        let maxFrameSize = host.maxEnvelopeSize + 4096
        while true {
            idle.add(1, ordering: .relaxed)
            let packet = host.channel.receive(into: buffer, maxFrameSize: maxFrameSize)
            if idle.subtract(1, ordering: .relaxed).newValue == 0 {
                ensureIdleReader()
            }
            host.serve(packet, maxFrameSize: maxFrameSize, spare: &spare)
        }
    }

    /// Called by a reader that took a frame and left none waiting.
    private func ensureIdleReader() {
        var count = started.load(ordering: .relaxed)
        while count < ReaderPool.maximumReaders {
            let (exchanged, original) = started.compareExchange(expected: count, desired: count + 1, ordering: .relaxed)
            if exchanged {
                if !host.startOwnThread({ self.run(onNewThread: true) }) {
                    _ = started.subtract(1, ordering: .relaxed)
                    WorkerLog.write("cannot start another channel reader thread: \(String(cString: strerror(errno)))")
                }
                return
            }
            count = original
        }
        host.breach("reader threads", "all \(ReaderPool.maximumReaders) channel reader threads are inside entry points that have not returned; further requests wait until one returns")
    }
}
