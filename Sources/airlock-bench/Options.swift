import AirlockClient
import AirlockPosix
import Glibc
import Synchronization

/// The command line of `airlock-bench`.
struct BenchOptions: Sendable {
    /// Print one JSON object instead of the table.
    var json = false
    /// A short smoke run: every scenario, tiny sizes (no meaningful figures).
    var quick = false
    /// The CPU of the pinned phase; nil = the last CPU this process may use.
    var cpu: Int32?
    /// Run only these scenarios (names as in the JSON keys); nil = all.
    var only: Set<String>?
    /// Round trips per latency measurement, overriding the default (for profiling).
    var roundTrips: Int?
    /// Bytes of the stream scenario, overriding the default (for profiling).
    var streamBytes: UInt64?
    /// Prepended to the airlockd command line, split on spaces (e.g. `valgrind --tool=callgrind`).
    var daemonPrefix: [String] = []
    /// Prepended to the worker's command line (through a wrapper script), split on spaces.
    var workerPrefix: [String] = []
    /// Every sandbox layer off for the `noop` plug-in too (profiling the worker with tools
    /// the sandbox would refuse).
    var noSandbox = false
    /// Leave glibc's malloc trim threshold at its default (see main.swift).
    var defaultTrimThreshold = false
    /// airlockd's --log-level.
    var daemonLogLevel = "notice"
    /// Keep the temporary folders (configuration, airlockd's log, state) for inspection.
    var keepTemporary = false
    /// The result ring the stream's connection offers (0: none; results through the socket).
    var resultRingSize = AirlockConnection.defaultResultRingSize
    /// Print progress on standard error.
    var verbose = false
    var help = false

    static let scenarioNames = [
        "roundTrip", "pingPongFloor", "concurrent16", "concurrent64", "stream", "streamAsync", "coldStart", "coldStartNoSandbox", "scale",
    ]

    static let usage = """
        USAGE: airlock-bench [--json] [--quick] [--cpu N] [--only NAME,...] [--round-trips N] [--stream-mib N]
                            [--daemon-prefix CMD] [--worker-prefix CMD] [--no-sandbox] [--default-trim]
                            [--daemon-log-level LEVEL] [--keep] [--result-ring KIB] [--verbose]

        Starts a real airlockd (with the noop plug-in, from this build's products folder) in a
        temporary folder, measures it, prints a table (or with --json one JSON object), and
        stops it. See issue 7 for what each figure means.

          --json               one JSON object on standard output
          --quick              a short smoke run: every scenario, tiny sizes, figures meaningless
          --cpu N              the CPU of the pinned phase (default: the last one allowed)
          --only NAMES         comma-separated subset of: \(scenarioNames.joined(separator: ", "))
                               (roundTrip and pingPongFloor always run together)
          --round-trips N      round trips per latency sample set (default 20000; quick 400)
          --stream-mib N       MiB the stream scenario receives (default 1024; quick 16)
          --daemon-prefix CMD  run airlockd under CMD (split on spaces), e.g. for profiling
          --worker-prefix CMD  run the workers under CMD (through a wrapper script)
          --no-sandbox         turn every sandbox layer off for the noop plug-in too
          --default-trim       keep glibc's malloc trim threshold (128 KiB) in this process; by
                               default it is raised to 8 MiB, as airlockd does and a streaming
                               application would (see the README, Performance)
          --daemon-log-level L airlockd's --log-level (default notice; info logs worker start times)
          --keep               keep the temporary folders (configuration, airlockd.log, state)
          --result-ring KIB    the result ring the stream's connection offers, in KiB (default
                               4096; 0: none, every result through the socket)
          --verbose            progress on standard error
        """

    static func parse(_ arguments: [String]) throws(UsageError) -> BenchOptions {
        var options = BenchOptions()
        var index = 0
        func value(_ name: String) throws(UsageError) -> String {
            index += 1
            guard index < arguments.count else { throw UsageError("\(name) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            let argument = arguments[index]
            switch argument {
            case "--json": options.json = true
            case "--quick": options.quick = true
            case "--verbose", "-v": options.verbose = true
            case "--help", "-h": options.help = true
            case "--cpu":
                let text = try value(argument)
                guard let cpu = Int32(text), cpu >= 0 else { throw UsageError("--cpu \(text): expected a CPU number") }
                options.cpu = cpu
            case "--only":
                let names = try value(argument).split(separator: ",").map(String.init)
                for name in names where !scenarioNames.contains(name) {
                    throw UsageError("--only: unknown scenario \(name); known: \(scenarioNames.joined(separator: ", "))")
                }
                options.only = Set(names)
            case "--round-trips":
                let text = try value(argument)
                guard let count = Int(text), count > 0 else { throw UsageError("--round-trips \(text): expected a positive count") }
                options.roundTrips = count
            case "--stream-mib":
                let text = try value(argument)
                guard let mebibytes = UInt64(text), mebibytes > 0 else { throw UsageError("--stream-mib \(text): expected a positive count") }
                options.streamBytes = mebibytes << 20
            case "--daemon-prefix":
                options.daemonPrefix = try value(argument).split(separator: " ").map(String.init)
            case "--worker-prefix":
                options.workerPrefix = try value(argument).split(separator: " ").map(String.init)
            case "--no-sandbox":
                options.noSandbox = true
            case "--default-trim":
                options.defaultTrimThreshold = true
            case "--daemon-log-level":
                options.daemonLogLevel = try value(argument)
            case "--keep":
                options.keepTemporary = true
            case "--result-ring":
                let text = try value(argument)
                guard let kib = Int(text), kib == 0 || (kib >= 64 && kib % 4 == 0) else {
                    throw UsageError("--result-ring \(text): expected 0 or a size in KiB, a multiple of 4 of at least 64")
                }
                options.resultRingSize = kib * 1024
            default:
                throw UsageError("unknown argument \(argument)")
            }
            index += 1
        }
        return options
    }

    /// Whether scenario `name` runs.
    func runs(_ name: String) -> Bool {
        guard let only else { return true }
        if name == "roundTrip" || name == "pingPongFloor" { return only.contains("roundTrip") || only.contains("pingPongFloor") }
        return only.contains(name)
    }
}

/// A command line that cannot be used.
struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Progress lines on standard error (with `--verbose`), and warnings always.
enum Progress {
    private static let enabled = Atomic<Bool>(false)

    /// Turns progress lines on (`--verbose`).
    static func enable() { enabled.store(true, ordering: .relaxed) }

    static func note(_ text: String) {
        if enabled.load(ordering: .relaxed) { warn(text) }
    }

    static func warn(_ text: String) {
        let line = Array("airlock-bench: \(text)\n".utf8)
        _ = line.withUnsafeBytes { try? Posix.writeAll(FileDescriptor(rawValue: 2), $0) }
    }
}
