import AirlockClient
import AirlockPosix
import Glibc

/// One run of the benchmark: a pinned phase (round trip and floor, everything on one CPU)
/// with its own airlockd, then an unpinned phase with a second airlockd for everything else.
struct Benchmark {
    let options: BenchOptions
    let products: BuildProducts

    /// Sizes of one run (`--quick` shrinks them all).
    struct Sizes {
        var roundTrips: Int
        var blocks: Int
        var warmUp: Int
        var concurrentSeconds: Double
        var streamBytes: UInt64
        var coldStarts: Int
        var scalePlugins: Int
        var shellsPerPlugin: Int
        var idleConnections: Int

        static let full = Sizes(
            roundTrips: 20_000, blocks: 5, warmUp: 2_000, concurrentSeconds: 3, streamBytes: 1 << 30, coldStarts: 25,
            scalePlugins: 10, shellsPerPlugin: 100, idleConnections: 1_000)
        static let quick = Sizes(
            roundTrips: 400, blocks: 2, warmUp: 50, concurrentSeconds: 0.3, streamBytes: 16 << 20, coldStarts: 3,
            scalePlugins: 2, shellsPerPlugin: 5, idleConnections: 20)
    }

    var sizes: Sizes {
        var sizes = options.quick ? Sizes.quick : Sizes.full
        if let roundTrips = options.roundTrips { sizes.roundTrips = roundTrips }
        if let streamBytes = options.streamBytes { sizes.streamBytes = streamBytes }
        return sizes
    }

    func run() async -> BenchResults {
        let start = MachineCPUTimes.read()
        var results = await runScenarios()
        if let start, let end = MachineCPUTimes.read() { results.conditions.append(("stealTime", end.stealDescription(since: start))) }
        return results
    }

    private func runScenarios() async -> BenchResults {
        var results = BenchResults()
        let sizes = self.sizes
        let descriptorLimit = raiseDescriptorLimit()
        var idleConnections = sizes.idleConnections
        if descriptorLimit < UInt64(idleConnections) * 2 + 256 {
            idleConnections = max(Int(descriptorLimit / 2) - 256, 0)
            results.failures.append("RLIMIT_NOFILE is only \(descriptorLimit): the scale test opens \(idleConnections) connections, not \(sizes.idleConnections)")
        }
        results.conditions = conditions(descriptorLimit: descriptorLimit)

        // Phase 1: everything on one CPU.
        if options.runs("roundTrip") {
            let cpu = options.cpu ?? Int32(CPUAffinity.configuredCPUs - 1)
            do {
                try CPUAffinity.setProcess(cpu: cpu)
                Progress.note("pinned phase on CPU \(cpu): starting airlockd")
                let daemon = try BenchDaemon.start(
                    label: "pinned", products: products, plugins: [BenchPlugin(name: "noop", sandboxed: !options.noSandbox)],
                    prefix: options.daemonPrefix, workerPrefix: options.workerPrefix,
                    logLevel: options.daemonLogLevel, keep: options.keepTemporary)
                defer { daemon.stop() }
                var phase = try await Scenarios.roundTripPhase(
                    daemon: daemon, products: products, pinning: "pinned to CPU \(cpu)", cpu: cpu,
                    roundTrips: sizes.roundTrips, blocks: sizes.blocks, warmUp: sizes.warmUp)
                // Check the pin reached airlockd and its worker.
                let counts = ([daemon.pid] + daemon.childPIDs()).compactMap { CPUAffinity.allowedCount(pid: $0) }
                if counts.contains(where: { $0 != 1 }) {
                    phase.pinning += " (warning: airlockd or its worker may use \(counts.max() ?? 0) CPUs)"
                }
                results.pinned = phase
            } catch {
                results.failures.append("pinned round trip: \(error)")
            }
            do {
                try CPUAffinity.setProcess(cpu: -1)
            } catch {
                results.failures.append("cannot unpin the benchmark: \(error); the unpinned figures are pinned")
            }
        }

        // Phase 2: no affinity; one airlockd with every plug-in the scenarios need.
        let coldPlugins = (0...sizes.coldStarts).map { "cold\($0)" }
        let barePlugins = (0...sizes.coldStarts).map { "bare\($0)" }
        let scalePlugins = (0..<sizes.scalePlugins).map { "scale\($0)" }
        var registrations = [BenchPlugin(name: "noop", sandboxed: !options.noSandbox)]
        registrations += coldPlugins.map { BenchPlugin(name: $0) }
        registrations += barePlugins.map { BenchPlugin(name: $0, sandboxed: false) }
        let daemon: BenchDaemon
        do {
            Progress.note("unpinned phase: starting airlockd with \(registrations.count) plug-in registrations")
            daemon = try BenchDaemon.start(
                label: "unpinned", products: products, plugins: registrations, prefix: options.daemonPrefix, workerPrefix: options.workerPrefix,
                    logLevel: options.daemonLogLevel, keep: options.keepTemporary)
        } catch {
            results.failures.append("unpinned phase: \(error)")
            return results
        }
        defer { daemon.stop() }
        let socketPath = daemon.socketPath

        await step("roundTrip (unpinned)", when: options.runs("roundTrip"), &results) { (results: inout BenchResults) async throws(BenchFailure) in
            results.unpinned = try await Scenarios.roundTripPhase(
                daemon: daemon, products: products, pinning: "unpinned", cpu: nil,
                roundTrips: sizes.roundTrips, blocks: sizes.blocks, warmUp: sizes.warmUp)
        }
        await step("concurrent16", when: options.runs("concurrent16"), &results) { (results: inout BenchResults) async throws(BenchFailure) in
            results.concurrent16 = try await Scenarios.concurrent(daemon: daemon, clients: 16, seconds: sizes.concurrentSeconds)
        }
        await step("concurrent64", when: options.runs("concurrent64"), &results) { (results: inout BenchResults) async throws(BenchFailure) in
            results.concurrent64 = try await Scenarios.concurrent(daemon: daemon, clients: 64, seconds: sizes.concurrentSeconds)
        }
        await step("stream", when: options.runs("stream") || options.runs("streamAsync"), &results) { (results: inout BenchResults) async throws(BenchFailure) in
            let before = try StreamFloor.measure(bytes: sizes.streamBytes / 4, products: products)
            // An untimed warm-up first: the first stream of a worker and connection also
            // pays for first touches (airlockd's output buffer, the ring's pages), which
            // would otherwise fall on whichever path is measured first. The two paths
            // share the floors around them.
            _ = try await Scenarios.stream(daemon: daemon, bytes: min(sizes.streamBytes, 128 << 20), path: .async, resultRingSize: options.resultRingSize)
            var stream = options.runs("stream") ? try await Scenarios.stream(daemon: daemon, bytes: sizes.streamBytes, path: .blocking, resultRingSize: options.resultRingSize) : nil
            var streamAsync = options.runs("streamAsync") ? try await Scenarios.stream(daemon: daemon, bytes: sizes.streamBytes, path: .async, resultRingSize: options.resultRingSize) : nil
            let after = try StreamFloor.measure(bytes: sizes.streamBytes / 4, products: products)
            stream?.floorGBPerSec = (before, after)
            streamAsync?.floorGBPerSec = (before, after)
            results.stream = stream
            results.streamAsync = streamAsync
        }
        await step("coldStart", when: options.runs("coldStart"), &results) { (results: inout BenchResults) async throws(BenchFailure) in
            results.coldStart = try await Scenarios.coldStart(socketPath: socketPath, plugins: coldPlugins)
        }
        await step("coldStartNoSandbox", when: options.runs("coldStartNoSandbox"), &results) { (results: inout BenchResults) async throws(BenchFailure) in
            results.coldStartNoSandbox = try await Scenarios.coldStart(socketPath: socketPath, plugins: barePlugins)
        }
        if let status = (try? ProcessControl.wait(pid: daemon.pid, noHang: true)) ?? nil {
            results.failures.append("airlockd \(status) during the run; its log:\n\(daemon.logTail())")
        }
        daemon.stop()

        // Phase 3: scale, with an airlockd of its own (unpinned) so earlier work does not
        // hide new allocations from VmRSS.
        await step("scale", when: options.runs("scale"), &results) { (results: inout BenchResults) async throws(BenchFailure) in
            let scaleDaemon = try BenchDaemon.start(
                label: "scale", products: products, plugins: scalePlugins.map { BenchPlugin(name: $0) },
                prefix: options.daemonPrefix, workerPrefix: options.workerPrefix,
                    logLevel: options.daemonLogLevel, keep: options.keepTemporary)
            defer { scaleDaemon.stop() }
            results.scale = try await Scenarios.scale(
                daemon: scaleDaemon, plugins: scalePlugins, shellsPerPlugin: sizes.shellsPerPlugin, connections: idleConnections,
                roundTrips: sizes.roundTrips)
        }
        return results
    }

    /// Runs one scenario; a failure is recorded and the run goes on.
    private func step(_ name: String, when enabled: Bool, _ results: inout BenchResults, _ body: (inout BenchResults) async throws(BenchFailure) -> Void) async {
        guard enabled else { return }
        Progress.note("\(name)...")
        let start = SystemClock.monotonicNanoseconds()
        do {
            try await body(&results)
        } catch {
            results.failures.append("\(name): \(error)")
        }
        Progress.note("\(name) took \((SystemClock.monotonicNanoseconds() &- start) / 1_000_000) ms")
    }

    /// Raises the soft RLIMIT_NOFILE to the hard limit (airlockd inherits it); returns it.
    private func raiseDescriptorLimit() -> UInt64 {
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = min(limit.rlim_max, 1 << 20)
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        return UInt64(limit.rlim_cur)
    }

    /// What the figures depend on.
    private func conditions(descriptorLimit: UInt64) -> [(String, String)] {
        var utsname = utsname()
        uname(&utsname)
        let kernel = withUnsafeBytes(of: utsname.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let cpuinfo = (try? Posix.readFile("/proc/cpuinfo")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { String($0.drop { $0 == " " }) } ?? "" } ?? "unknown"
        let load = (try? Posix.readFile("/proc/loadavg")).map { String(decoding: $0, as: UTF8.self) }?
            .split(separator: " ").prefix(3).joined(separator: " ") ?? "unknown"
        return [
            ("build", buildConfiguration + (options.quick ? " (--quick: sizes too small for meaningful figures)" : "")),
            ("cpus", "\(CPUAffinity.configuredCPUs) configured, \(CPUAffinity.allowedCount()) allowed (\(model))"),
            ("kernel", "Linux \(kernel)"),
            ("loadAverage", load + " (at start; other work on the machine skews every figure)"),
            ("pinnedPhase", options.runs("roundTrip")
                ? "bench, airlockd, worker and ping-pong partner all on CPU \(options.cpu ?? Int32(CPUAffinity.configuredCPUs - 1)) (sched_setaffinity, inherited)"
                : "not run"),
            ("unpinnedPhase", "no affinity set: concurrent, stream, coldStart and the unpinned round trip (one airlockd), then scale (an airlockd of its own)"),
            ("roundTripOperation", "SIGNAL to a command of a noop shell, completed by WSManPluginOperationComplete on the calling thread"),
            ("floor", "64-byte ping-pong with a child process over a socketpair, interleaved with the round trips in the same run"),
            ("malloc", options.defaultTrimThreshold
                ? "glibc defaults in this process (--default-trim)"
                : "M_TRIM_THRESHOLD \(MallocPolicy.defaultTrimThreshold >> 20) MiB, M_MMAP_THRESHOLD \(MallocPolicy.defaultMmapThreshold >> 20) MiB in this process, as a streaming application sets them (airlockd sets the same for itself; --default-trim keeps glibc's)"),
            ("descriptorLimit", String(descriptorLimit)),
            ("products", products.directory),
        ]
    }
}
