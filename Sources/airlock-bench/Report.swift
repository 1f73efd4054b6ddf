/// The targets of issue 7.
enum Targets {
    static let roundTripRatio = 4.0
    static let concurrent16 = 40_000.0
    static let streamGBPerSec = 1.5
    static let coldStartP50ms = 10.0
    static let bytesPerConnection = 32.0 * 1024
    static let bytesPerShell = 8.0 * 1024
    static let loadedP99Ratio = 2.0
}

/// A JSON value with ordered keys (no Foundation).
indirect enum JSON {
    case number(Double, digits: Int)
    case integer(Int64)
    case string(String)
    case bool(Bool)
    case null
    case array([JSON])
    case object([(String, JSON)])

    func render(indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent + 1)
        let close = String(repeating: "  ", count: indent)
        switch self {
        case .number(let value, let digits): return value.isFinite ? fixed(value, digits) : "null"
        case .integer(let value): return String(value)
        case .string(let text): return jsonString(text)
        case .bool(let value): return value ? "true" : "false"
        case .null: return "null"
        case .array(let items):
            if items.isEmpty { return "[]" }
            return "[\n" + items.map { pad + $0.render(indent: indent + 1) }.joined(separator: ",\n") + "\n" + close + "]"
        case .object(let members):
            if members.isEmpty { return "{}" }
            return "{\n" + members.map { pad + jsonString($0.0) + ": " + $0.1.render(indent: indent + 1) }.joined(separator: ",\n") + "\n" + close + "}"
        }
    }
}

/// `value` with exactly `digits` decimals.
func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "n/a" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int64(scaled / scale)
    let fraction = Int64(scaled - Double(whole) * scale)
    var text = (value < 0 && scaled != 0 ? "-" : "") + String(whole)
    if digits > 0 {
        let digitsText = String(fraction)
        text += "." + String(repeating: "0", count: max(digits - digitsText.count, 0)) + digitsText
    }
    return text
}

/// `value` rounded to an integer with thousands separators.
func grouped(_ value: Double) -> String {
    guard value.isFinite else { return "n/a" }
    let digits = String(Int64(value.rounded()))
    var result = ""
    for (index, character) in digits.reversed().enumerated() {
        if index > 0 && index % 3 == 0 && character != "-" { result.append(",") }
        result.append(character)
    }
    return String(result.reversed())
}

extension BenchResults {
    // MARK: - JSON

    /// One object: the keys of issue 7 with exactly their fields, then `ratio`, `targets`,
    /// `details` and `conditions`.
    func json() -> String {
        var members: [(String, JSON)] = []
        let headline = self.headline
        members.append(("roundTrip", headline.map { .object([("p50us", .number($0.best.latency.p50us, digits: 1)), ("p99us", .number($0.best.latency.p99us, digits: 1))]) } ?? .null))
        members.append(("pingPongFloor", headline.map { .object([("p50us", .number($0.floorStream.p50us, digits: 1))]) } ?? .null))
        members.append(("concurrent16", concurrent16.map { .object([("opsPerSec", .number($0.opsPerSec, digits: 0))]) } ?? .null))
        members.append(("concurrent64", concurrent64.map { .object([("opsPerSec", .number($0.opsPerSec, digits: 0))]) } ?? .null))
        members.append(("stream", stream.map { .object([("gbPerSec", .number($0.gbPerSec, digits: 2))]) } ?? .null))
        members.append(("coldStart", coldStart.map { .object([("p50ms", .number($0.p50ms, digits: 2)), ("p99ms", .number($0.p99ms, digits: 2))]) } ?? .null))
        members.append(("coldStartNoSandbox", coldStartNoSandbox.map { .object([("p50ms", .number($0.p50ms, digits: 2))]) } ?? .null))
        members.append(("scale", scale.map {
            .object([
                ("rssBytesPerConnection", .number($0.rssBytesPerConnection, digits: 0)),
                ("rssBytesPerShell", .number($0.rssBytesPerShell, digits: 0)),
                ("p99us", .number($0.loaded.p99us, digits: 1)),
            ])
        } ?? .null))
        members.append(("ratio", headline.map { .number($0.ratio, digits: 2) } ?? .null))
        members.append(("pinnedFloorSuspect", .bool(pinnedFloorSuspect)))
        members.append(("targets", .object(targetChecks().map { ($0.name, .object([("target", .string($0.target)), ("met", $0.met.map(JSON.bool) ?? .null)])) })))
        members.append(("details", details()))
        members.append(("conditions", .object(conditions.map { ($0.0, .string($0.1)) })))
        members.append(("failures", .array(failures.map(JSON.string))))
        return JSON.object(members).render()
    }

    private func latencyJSON(_ latency: Latency) -> JSON {
        .object([
            ("p50us", .number(latency.p50us, digits: 1)), ("p90us", .number(latency.p90us, digits: 1)),
            ("p99us", .number(latency.p99us, digits: 1)), ("minUs", .number(latency.minimumUs, digits: 1)),
            ("samples", .integer(Int64(latency.count))),
        ])
    }

    private func phaseJSON(_ phase: RoundTripPhase) -> JSON {
        .object([
            ("pinning", .string(phase.pinning)),
            ("headlinePath", .string(phase.best.name)),
            ("ratioToStreamFloor", .number(phase.ratio, digits: 2)),
            ("ratioToSeqpacketFloor", .number(phase.floorSeqpacket.p50us > 0 ? phase.best.latency.p50us / phase.floorSeqpacket.p50us : 0, digits: 2)),
            ("blocking", latencyJSON(phase.blocking)),
            ("async", latencyJSON(phase.async)),
            ("supervisorPing", latencyJSON(phase.supervisorPing)),
            ("floorStream", latencyJSON(phase.floorStream)),
            ("floorSeqpacket", latencyJSON(phase.floorSeqpacket)),
            ("perBlockingRoundTrip", phase.blockingCosts.map(costsJSON) ?? .null),
        ])
    }

    /// A stream's costs per chunk, CPU per GiB and the client's page faults per chunk.
    private func streamCostsLine(_ s: StreamResult) -> String {
        let faults = s.chunks > 0 ? Double(s.costs.client.minorFaults) / Double(s.chunks) : 0
        return costsLine(s.costs) + "; " + fixed(s.cpuSecondsPerGiB, 2) + " s CPU per GiB; client " + fixed(faults, 1) + " page faults"
    }

    /// "client 1.0 cs, 17.0 us CPU; airlockd ...; worker ...".
    private func costsLine(_ costs: OperationCosts) -> String {
        let parties = [("client", costs.client), ("airlockd", costs.supervisor), ("worker", costs.workers)]
        return parties.map { "\($0.0) \(fixed(costs.switchesPerOperation($0.1), 1)) cs, \(fixed(costs.cpuMicrosecondsPerOperation($0.1), 1)) us CPU" }
            .joined(separator: "; ")
    }

    private func costsJSON(_ costs: OperationCosts) -> JSON {
        func party(_ process: ProcessCosts) -> JSON {
            .object([
                ("contextSwitches", .number(costs.switchesPerOperation(process), digits: 2)),
                ("voluntary", .number(costs.operations > 0 ? Double(process.voluntarySwitches) / Double(costs.operations) : 0, digits: 2)),
                ("cpuUs", .number(costs.cpuMicrosecondsPerOperation(process), digits: 1)),
                ("minorFaults", .number(costs.operations > 0 ? Double(process.minorFaults) / Double(costs.operations) : 0, digits: 2)),
            ])
        }
        return .object([
            ("operations", .integer(Int64(costs.operations))),
            ("client", party(costs.client)), ("supervisor", party(costs.supervisor)), ("worker", party(costs.workers)),
        ])
    }

    private func details() -> JSON {
        var members: [(String, JSON)] = []
        if let pinned { members.append(("roundTripPinned", phaseJSON(pinned))) }
        if let unpinned { members.append(("roundTripUnpinned", phaseJSON(unpinned))) }
        for (name, throughput) in [("concurrent16", concurrent16), ("concurrent64", concurrent64)] {
            guard let throughput else { continue }
            members.append((name, .object([
                ("clients", .integer(Int64(throughput.clients))), ("operations", .integer(Int64(throughput.operations))),
                ("seconds", .number(throughput.seconds, digits: 3)), ("path", .string("blocking Signals, one connection, shell and thread per client")),
                ("perOperation", costsJSON(throughput.costs)),
            ])))
        }
        for (name, stream) in [("stream", stream), ("streamAsync", streamAsync)] {
            guard let stream else { continue }
            members.append((name, .object([
                ("bytes", .integer(Int64(stream.bytes))), ("chunks", .integer(Int64(stream.chunks))), ("gbPerSec", .number(stream.gbPerSec, digits: 2)),
                ("seconds", .number(stream.seconds, digits: 3)), ("path", .string(stream.path.description)),
                ("cpuSecondsPerGiB", .number(stream.cpuSecondsPerGiB, digits: 2)), ("perChunk", costsJSON(stream.costs)),
                ("floorGBPerSec", .object([
                    ("before", .number(stream.floorGBPerSec.before, digits: 2)), ("after", .number(stream.floorGBPerSec.after, digits: 2)),
                    ("path", .string("64 KiB sends over one Unix stream socket to a child process (one hop), just before and after the stream")),
                ])),
            ])))
        }
        for (name, cold) in [("coldStart", coldStart), ("coldStartNoSandbox", coldStartNoSandbox)] {
            guard let cold else { continue }
            members.append((name, .object([
                ("samples", .integer(Int64(cold.milliseconds.count))), ("minMs", .number(cold.minimumMs, digits: 2)),
                ("allMs", .array(cold.milliseconds.map { .number($0, digits: 2) })),
            ])))
        }
        if let scale {
            members.append(("scale", .object([
                ("plugins", .integer(Int64(scale.plugins))), ("shells", .integer(Int64(scale.shells))),
                ("idleConnections", .integer(Int64(scale.connections))),
                ("rssBaselineBytes", .integer(Int64(scale.rssBaseline))), ("rssAfterShellsBytes", .integer(Int64(scale.rssAfterShells))),
                ("rssAfterConnectionsBytes", .integer(Int64(scale.rssAfterConnections))),
                ("workersRSSBytes", .integer(Int64(scale.workerRSS))),
                ("unloaded", latencyJSON(scale.unloaded)), ("loaded", latencyJSON(scale.loaded)),
                ("p99Ratio", .number(scale.unloaded.p99us > 0 ? scale.loaded.p99us / scale.unloaded.p99us : 0, digits: 2)),
            ])))
        }
        return .object(members)
    }

    // MARK: - Targets

    struct TargetCheck {
        var name: String
        var target: String
        var met: Bool?
    }

    func targetChecks() -> [TargetCheck] {
        let headline = self.headline
        let scaleRatio = scale.map { $0.unloaded.p99us > 0 ? $0.loaded.p99us / $0.unloaded.p99us : .infinity }
        return [
            TargetCheck(name: "roundTrip", target: "p50 <= 4 x pingPongFloor p50",
                        met: pinnedFloorSuspect ? nil : headline.map { $0.ratio <= Targets.roundTripRatio }),
            TargetCheck(name: "concurrent16", target: ">= 40,000 ops/s", met: concurrent16.map { $0.opsPerSec >= Targets.concurrent16 }),
            TargetCheck(name: "stream", target: ">= 1.5 GB/s", met: stream.map { $0.gbPerSec >= Targets.streamGBPerSec }),
            TargetCheck(name: "coldStart", target: "p50 <= 10 ms (full sandbox)", met: coldStart.map { $0.p50ms <= Targets.coldStartP50ms }),
            TargetCheck(name: "scale.rssBytesPerConnection", target: "<= 32 KiB", met: scale.map { $0.rssBytesPerConnection <= Targets.bytesPerConnection }),
            TargetCheck(name: "scale.rssBytesPerShell", target: "<= 8 KiB", met: scale.map { $0.rssBytesPerShell <= Targets.bytesPerShell }),
            TargetCheck(name: "scale.p99us", target: "<= 2 x unloaded p99", met: scaleRatio.map { $0 <= Targets.loadedP99Ratio }),
        ]
    }

    // MARK: - Table

    func table() -> String {
        var rows: [(String, String, String, String)] = [("figure", "value", "target", "floor / reference")]
        func mark(_ met: Bool?) -> String { met.map { $0 ? "  ok" : "  MISSED" } ?? "" }
        let checks = Dictionary(uniqueKeysWithValues: targetChecks().map { ($0.name, $0.met) })
        func us(_ value: Double) -> String { fixed(value, 1) + " us" }

        for phase in [pinned, unpinned].compactMap({ $0 }) {
            let headline = phase.pinnedCPU != nil
            let label = headline ? "pinned, CPU \(phase.pinnedCPU!)" : "unpinned"
            let best = phase.best
            rows.append((
                "roundTrip p50 / p99 (\(label))", us(best.latency.p50us) + " / " + fixed(best.latency.p99us, 1),
                (headline || pinned == nil ? "<= 4 x floor" + mark(checks["roundTrip"] ?? nil) : "(info)"),
                "\(fixed(phase.ratio, 2))x the STREAM floor (C relay: 2.6x)"))
            rows.append(("  blocking signalBlocking", us(phase.blocking.p50us) + " / " + fixed(phase.blocking.p99us, 1), "", best.name == "blocking" ? "<- headline" : ""))
            rows.append(("  async Command.signal", us(phase.async.p50us) + " / " + fixed(phase.async.p99us, 1), "", best.name == "async" ? "<- headline" : ""))
            rows.append(("  supervisor PING (1 hop)", us(phase.supervisorPing.p50us) + " / " + fixed(phase.supervisorPing.p99us, 1), "", ""))
            if let costs = phase.blockingCosts {
                rows.append(("  per blocking round trip", "", "", costsLine(costs)))
            }
            rows.append((
                "pingPongFloor p50 (\(label))", us(phase.floorStream.p50us), "", "SOCK_STREAM; SEQPACKET \(us(phase.floorSeqpacket.p50us))"))
            if headline && pinnedFloorSuspect {
                rows.append(("  warning", "", "not judged", "the pinned CPU was busy (floor above twice the unpinned floor): rerun on a quieter machine"))
            }
        }
        if let c = concurrent16 {
            rows.append(("concurrent16", grouped(c.opsPerSec) + " ops/s", ">= 40,000" + mark(checks["concurrent16"] ?? nil), "C relay: 75-80k (one worker)"))
            rows.append(("  per operation", "", "", costsLine(c.costs)))
        }
        if let c = concurrent64 {
            rows.append(("concurrent64", grouped(c.opsPerSec) + " ops/s", "", ""))
            rows.append(("  per operation", "", "", costsLine(c.costs)))
        }
        if let s = stream {
            rows.append(("stream (\(s.bytes >> 20) MiB, 64 KiB chunks)", fixed(s.gbPerSec, 2) + " GB/s", ">= 1.5" + mark(checks["stream"] ?? nil),
                         "one-hop socket floor " + fixed(s.floorGBPerSec.before, 2) + " / " + fixed(s.floorGBPerSec.after, 2) + " GB/s (before / after); C relay: 2.5-3.2"))
            rows.append(("  per 64 KiB chunk", "", "", streamCostsLine(s) + "; outputBlocking()"))
        }
        if let s = streamAsync {
            rows.append(("stream, async output", fixed(s.gbPerSec, 2) + " GB/s", "", "Command.output() in a task, same floors"))
            rows.append(("  per 64 KiB chunk", "", "", streamCostsLine(s)))
        }
        if let c = coldStart {
            rows.append(("coldStart p50 / p99 (full sandbox)", fixed(c.p50ms, 2) + " / " + fixed(c.p99ms, 2) + " ms", "p50 <= 10" + mark(checks["coldStart"] ?? nil), "C spawn + sandbox + dlopen: ~2 ms"))
        }
        if let c = coldStartNoSandbox {
            rows.append(("coldStartNoSandbox p50", fixed(c.p50ms, 2) + " ms", "", "posix_spawn + dlopen: ~1 ms"))
        }
        if let s = scale {
            rows.append(("scale RSS per idle connection", grouped(s.rssBytesPerConnection) + " B", "<= 32,768" + mark(checks["scale.rssBytesPerConnection"] ?? nil), "\(s.connections) connections"))
            rows.append(("scale RSS per idle shell", grouped(s.rssBytesPerShell) + " B", "<= 8,192" + mark(checks["scale.rssBytesPerShell"] ?? nil), "\(s.shells) shells, \(s.plugins) plug-ins"))
            rows.append((
                "scale round trip p99 under load", us(s.loaded.p99us), "<= 2 x \(fixed(s.unloaded.p99us, 1))" + mark(checks["scale.p99us"] ?? nil),
                "unloaded (before+after) p50/p99 \(fixed(s.unloaded.p50us, 1))/\(fixed(s.unloaded.p99us, 1)), loaded p50 \(fixed(s.loaded.p50us, 1))"))
        }
        let widths = (0..<3).map { column in rows.map { [$0.0, $0.1, $0.2][column].count }.max() ?? 0 }
        var text = "airlock-bench\n"
        for (key, value) in conditions { text += "  \(key): \(value)\n" }
        text += "\n"
        for (index, row) in rows.enumerated() {
            let cells = [row.0, row.1, row.2]
            var line = ""
            for (column, cell) in cells.enumerated() {
                line += cell + String(repeating: " ", count: widths[column] - cell.count + 2)
            }
            text += line + row.3 + "\n"
            if index == 0 { text += String(repeating: "-", count: widths.reduce(0, +) + 6 + 30) + "\n" }
        }
        if !failures.isEmpty {
            text += "\nfailures:\n" + failures.map { "  - \($0)\n" }.joined()
        }
        return text
    }
}
