import Glibc
import Synchronization

/// Dedicated OS threads for the measuring loops: the blocking client API must not run on a
/// Swift concurrency pool thread, and a loop of its own keeps the pool out of the figures.
enum BenchThread {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Runs `body` on a new OS thread and returns its result once the thread has finished
    /// it. A thread that cannot be created runs `body` on the caller's thread instead.
    static func run<Value: Sendable>(_ body: @escaping @Sendable () -> Value) async -> Value {
        await withCheckedContinuation { (continuation: CheckedContinuation<Value, Never>) in
            let started = start {
                continuation.resume(returning: body())
            }
            if !started {
                continuation.resume(returning: body())
            }
        }
    }

    /// Starts a detached thread; false when `pthread_create` fails.
    private static func start(_ body: @escaping () -> Void) -> Bool {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { context in
            Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        if result != 0 {
            Unmanaged<Body>.fromOpaque(context).release()
            return false
        }
        return true
    }
}

/// Starts and stops a group of load threads together: each waits at ``waitForStart()``
/// until the coordinator calls ``go()``, and loops while ``isRunning``.
final class LoadGate: Sendable {
    private let phase = Atomic<Int>(0)
    private let ready = Atomic<Int>(0)

    /// The threads that reached ``waitForStart()``.
    var readyCount: Int { ready.load(ordering: .acquiring) }

    /// True between ``go()`` and ``stop()``.
    var isRunning: Bool { phase.load(ordering: .relaxed) == 1 }

    /// Called by a load thread: counts it ready, then waits for ``go()``.
    func waitForStart() {
        ready.add(1, ordering: .releasing)
        while phase.load(ordering: .acquiring) == 0 {
            usleep(200)
        }
    }

    func go() { phase.store(1, ordering: .releasing) }
    func stop() { phase.store(2, ordering: .releasing) }
}
