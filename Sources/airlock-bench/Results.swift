/// Latency percentiles of a set of samples.
struct Latency: Sendable {
    var p50us: Double
    var p90us: Double
    var p99us: Double
    var minimumUs: Double
    var count: Int

    /// Percentiles of `nanoseconds` (nearest rank).
    init(nanoseconds samples: [UInt64]) {
        let sorted = samples.sorted()
        func rank(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))
            return Double(sorted[index]) / 1000
        }
        p50us = rank(0.50)
        p90us = rank(0.90)
        p99us = rank(0.99)
        minimumUs = sorted.first.map { Double($0) / 1000 } ?? 0
        count = sorted.count
    }
}

/// The round trips and floors measured under one pinning.
struct RoundTripPhase: Sendable {
    /// "pinned to CPU n" or "unpinned".
    var pinning: String
    var pinnedCPU: Int32?
    /// `Command.signalBlocking` (the client's blocking fast path).
    var blocking: Latency
    /// `Command.signal` (async/await).
    var async: Latency
    var floorStream: Latency
    var floorSeqpacket: Latency
    /// PING to the supervisor alone (one hop), blocking.
    var supervisorPing: Latency
    /// Context switches and CPU per blocking round trip (client, airlockd, worker).
    var blockingCosts: OperationCosts?

    /// The better of the two client paths (by median).
    var best: (name: String, latency: Latency) {
        blocking.p50us <= async.p50us ? ("blocking", blocking) : ("async", async)
    }

    /// The headline ratio: best round trip p50 / SOCK_STREAM floor p50.
    var ratio: Double { floorStream.p50us > 0 ? best.latency.p50us / floorStream.p50us : 0 }
}

/// Operations per second with many clients.
struct Throughput: Sendable {
    var clients: Int
    var operations: Int
    var seconds: Double
    /// CPU and context switches per operation of the clients, airlockd and the worker.
    var costs: OperationCosts
    var opsPerSec: Double { seconds > 0 ? Double(operations) / seconds : 0 }
}

/// How the stream scenario's client takes the output.
enum StreamPath: Sendable {
    /// ``Command/outputBlocking(streams:timeout:)`` on a thread of its own, which reads the
    /// socket itself.
    case blocking
    /// ``Command/output(streams:timeout:)`` in a task: the connection's reader thread
    /// receives and hands each result to the task.
    case async

    var description: String {
        switch self {
        case .blocking: "one RECEIVE through Command.outputBlocking() on a thread of its own (the thread reads the socket)"
        case .async: "one RECEIVE through Command.output() in a task (the connection's reader thread hands each result over)"
        }
    }
}

struct StreamResult: Sendable {
    var path: StreamPath
    var bytes: UInt64
    var chunks: Int
    var seconds: Double
    /// CPU and context switches per chunk of the client, airlockd and the worker.
    var costs: OperationCosts
    /// ``StreamFloor`` just before and just after the stream, GB/s.
    var floorGBPerSec: (before: Double, after: Double) = (0, 0)
    var gbPerSec: Double { seconds > 0 ? Double(bytes) / seconds / 1e9 : 0 }
    /// CPU seconds per GiB delivered, all three processes together (insensitive to load).
    var cpuSecondsPerGiB: Double {
        let total = costs.client.cpuNanoseconds &+ costs.supervisor.cpuNanoseconds &+ costs.workers.cpuNanoseconds
        return bytes > 0 ? Double(total) / 1e9 / (Double(bytes) / Double(1 << 30)) : 0
    }
}

struct ColdStartResult: Sendable {
    var milliseconds: [Double]
    var p50ms: Double { percentile(0.5) }
    var p99ms: Double { percentile(0.99) }
    var minimumMs: Double { milliseconds.min() ?? 0 }

    private func percentile(_ p: Double) -> Double {
        let sorted = milliseconds.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
    }
}

struct ScaleResult: Sendable {
    var plugins: Int
    var shells: Int
    var connections: Int
    var rssBaseline: UInt64
    var rssAfterShells: UInt64
    var rssAfterConnections: UInt64
    /// Shells whose memory the per-shell figure divides (those created after the baseline).
    var shellsMeasured: Int
    var workerRSS: UInt64
    var unloaded: Latency
    var loaded: Latency

    var rssBytesPerShell: Double {
        shellsMeasured > 0 ? Double(Int64(rssAfterShells) - Int64(rssBaseline)) / Double(shellsMeasured) : 0
    }
    var rssBytesPerConnection: Double {
        connections > 0 ? Double(Int64(rssAfterConnections) - Int64(rssAfterShells)) / Double(connections) : 0
    }
}

/// Everything one run measured, and under which conditions.
struct BenchResults: Sendable {
    var pinned: RoundTripPhase?
    var unpinned: RoundTripPhase?
    var concurrent16: Throughput?
    var concurrent64: Throughput?
    /// Through the blocking output (the figure of issue 7).
    var stream: StreamResult?
    /// Through the async output, for comparison.
    var streamAsync: StreamResult?
    var coldStart: ColdStartResult?
    var coldStartNoSandbox: ColdStartResult?
    var scale: ScaleResult?
    var failures: [String] = []
    var conditions: [(String, String)] = []

    /// The phase the headline round trip and floor come from: pinned when measured.
    var headline: RoundTripPhase? { pinned ?? unpinned }

    /// True when the pinned floor came out more than twice the unpinned one: the pinned CPU
    /// was busy with other work (each hand-off waited for its time slice), so the pinned
    /// ratio says nothing about Airlock and the round-trip target is not judged.
    var pinnedFloorSuspect: Bool {
        guard let pinned, let unpinned, unpinned.floorStream.p50us > 0 else { return false }
        return pinned.floorStream.p50us > 2 * unpinned.floorStream.p50us
    }
}
