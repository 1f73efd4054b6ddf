// airlock-bench: the benchmark of issue 7. `swift run -c release airlock-bench [--json]`.
//
// Three helper roles re-execute this binary: `--pong FD KIND` (the ping-pong partner of the
// floor measurement), `--sink FD BYTES` (the receiver of the stream's floor) and
// `--guard PID FOLDER` (stops airlockd if the benchmark dies).
import AirlockPosix
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
// The benchmark's own malloc policy, an application's decision that the report states
// under `conditions`. The client library hands each result's data over as a `[UInt8]` of
// its own: for a stream of 64 KiB results, one malloc per result, freed when the consumer
// lets go of it. With glibc's 128 KiB trim threshold the memory goes back to the kernel
// and the next arrays fault it in again (up to 16 page faults per result, 10-15 % of the
// stream here); a streaming application keeps it mapped, as airlockd does for its frames.
if !options.defaultTrimThreshold { MallocPolicy.keepFreedMemory() }
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
