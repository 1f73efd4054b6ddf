// airlock-bench: the benchmark of issue 7. `swift run -c release airlock-bench [--json]`.
//
// Three helper roles re-execute this binary: `--pong FD KIND` (the ping-pong partner of the
// floor measurement), `--sink FD BYTES` (the receiver of the stream's floor) and
// `--guard PID FOLDER` (stops airlockd if the benchmark dies).
import Glibc

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "--pong": PongServer.run(arguments: arguments)
case "--sink": StreamFloor.runSink(arguments: arguments)
case "--guard": DaemonGuard.run(arguments: arguments)
default: break
}

let options: BenchOptions
do {
    options = try BenchOptions.parse(arguments)
} catch {
    Progress.warn("\(error)\n\(BenchOptions.usage)")
    exit(64)
}
if options.help {
    print(BenchOptions.usage)
    exit(0)
}
if options.verbose { Progress.enable() }
if !options.defaultTrimThreshold { BenchAllocator.raiseTrimThreshold() }
// A client whose peer vanished gets EPIPE, not a dead benchmark.
signal(SIGPIPE, SIG_IGN)

let products: BuildProducts
do {
    products = try BuildProducts.locate()
    try products.prepare()
} catch {
    Progress.warn("\(error)")
    exit(1)
}

let results = await Benchmark(options: options, products: products).run()
print(options.json ? results.json() : results.table())
exit(results.failures.isEmpty ? 0 : 1)
