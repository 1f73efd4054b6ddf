/// The confinement layers of a worker sandbox; each can be turned off per plug-in.
///
/// Bit numbers are those of the wire encoding (PROTOCOL.md §8).
public struct SandboxLayers: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// A user namespace mapping the worker's (unprivileged) uid and gid to 0 inside.
    public static let userNamespace = SandboxLayers(rawValue: 1 << 0)
    /// A mount namespace: a read-only view of the system, private `/tmp`, the state folder writable.
    public static let mountNamespace = SandboxLayers(rawValue: 1 << 1)
    /// A PID namespace: nothing outside is visible or signalable; a private `/proc`.
    public static let pidNamespace = SandboxLayers(rawValue: 1 << 2)
    /// A network namespace with only loopback (skipped when the profile allows network).
    public static let networkNamespace = SandboxLayers(rawValue: 1 << 3)
    /// An IPC namespace (System V IPC and POSIX message queues) and a private `/dev/shm`.
    public static let ipcNamespace = SandboxLayers(rawValue: 1 << 4)
    /// A UTS namespace with its own host name.
    public static let utsNamespace = SandboxLayers(rawValue: 1 << 5)
    /// Landlock: a file-system allowlist, TCP bind/connect denied without network, signal scoping.
    public static let landlock = SandboxLayers(rawValue: 1 << 6)
    /// seccomp-bpf: the deny list of ``Sandbox/deniedSystemCalls``.
    public static let seccomp = SandboxLayers(rawValue: 1 << 7)
    /// rlimits: memory (`RLIMIT_DATA`), tasks (`RLIMIT_NPROC`), open files, no core dumps.
    public static let resourceLimits = SandboxLayers(rawValue: 1 << 8)
    /// `PR_SET_NO_NEW_PRIVS` and every capability dropped.
    public static let noNewPrivileges = SandboxLayers(rawValue: 1 << 9)

    /// Every layer: the default.
    public static let all: SandboxLayers = [
        .userNamespace, .mountNamespace, .pidNamespace, .networkNamespace, .ipcNamespace,
        .utsNamespace, .landlock, .seccomp, .resourceLimits, .noNewPrivileges,
    ]
}

/// What a worker's sandbox allows: the per-plug-in profile, secure by default.
///
/// Travels from the supervisor to the worker inside `W_START` with ``encoded()``.
public struct SandboxProfile: Sendable, Equatable {
    /// The layers to apply (default: ``SandboxLayers/all``).
    public var layers: SandboxLayers
    /// The user to run as (needs root); `nil` = unchanged. A root supervisor passes
    /// `nobody`/`nogroup` when the configuration names no user.
    public var runAsUID: UInt32?
    /// The group to run as (needs root); `nil` = unchanged.
    public var runAsGID: UInt32?
    /// The memory cap in bytes (`RLIMIT_DATA`; default 1024 MiB, WinRM's MaxMemoryPerShellMB).
    public var memoryBytes: UInt64
    /// Processes plus threads (default 64).
    public var maxTasks: UInt32
    /// Open descriptors (default 256).
    public var maxOpenFiles: UInt32
    /// Whether the plug-in may use the network (default `false`).
    public var allowNetwork: Bool
    /// The plug-in's writable state folder (created when missing); empty = none.
    public var stateDirectory: String
    /// Extra readable paths (the plug-in's folder is added by the worker).
    public var readPaths: [String]
    /// Extra writable paths.
    public var writePaths: [String]
    /// A cgroup v2 directory the worker joins first; empty = none.
    public var cgroupPath: String
    /// The groups `setgroups` installs when the worker changes user (root only): the run-as
    /// user's groups, primary group included, resolved by the supervisor so the worker does
    /// no user-database (NSS) lookup at start. Empty = only ``runAsGID``.
    public var supplementaryGroups: [UInt32]

    /// The default memory cap: 1024 MiB.
    public static let defaultMemoryBytes: UInt64 = 1024 * 1024 * 1024

    public init(
        layers: SandboxLayers = .all,
        runAsUID: UInt32? = nil,
        runAsGID: UInt32? = nil,
        memoryBytes: UInt64 = SandboxProfile.defaultMemoryBytes,
        maxTasks: UInt32 = 64,
        maxOpenFiles: UInt32 = 256,
        allowNetwork: Bool = false,
        stateDirectory: String = "",
        readPaths: [String] = [],
        writePaths: [String] = [],
        cgroupPath: String = "",
        supplementaryGroups: [UInt32] = []
    ) {
        self.layers = layers
        self.runAsUID = runAsUID
        self.runAsGID = runAsGID
        self.memoryBytes = memoryBytes
        self.maxTasks = maxTasks
        self.maxOpenFiles = maxOpenFiles
        self.allowNetwork = allowNetwork
        self.stateDirectory = stateDirectory
        self.readPaths = readPaths
        self.writePaths = writePaths
        self.cgroupPath = cgroupPath
        self.supplementaryGroups = supplementaryGroups
    }

    private static let unchanged: UInt32 = 0xFFFF_FFFF

    /// The wire encoding (PROTOCOL.md §8): u32 layers, u32 runAsUID (0xFFFFFFFF = unchanged),
    /// u32 runAsGID, u64 memoryBytes, u32 maxTasks, u32 maxOpenFiles, bool allowNetwork,
    /// str stateDirectory, list<str> readPaths, list<str> writePaths, str cgroupPath,
    /// list<u32> supplementaryGroups.
    public func encoded() -> [UInt8] {
        var writer = LittleEndianWriter()
        writer.u32(layers.rawValue)
        writer.u32(runAsUID ?? Self.unchanged)
        writer.u32(runAsGID ?? Self.unchanged)
        writer.u64(memoryBytes)
        writer.u32(maxTasks)
        writer.u32(maxOpenFiles)
        writer.u8(allowNetwork ? 1 : 0)
        writer.string(stateDirectory)
        writer.u32(UInt32(readPaths.count))
        for path in readPaths { writer.string(path) }
        writer.u32(UInt32(writePaths.count))
        for path in writePaths { writer.string(path) }
        writer.string(cgroupPath)
        writer.u32(UInt32(supplementaryGroups.count))
        for group in supplementaryGroups { writer.u32(group) }
        return writer.bytes
    }

    /// Decodes ``encoded()`` strictly: undefined layer bits, a boolean other than 0 or 1,
    /// invalid UTF-8 or NUL in a string, missing or extra bytes are all errors.
    public init(decoding bytes: [UInt8]) throws(SandboxProfileDecodingError) {
        var reader = LittleEndianReader(bytes)
        let layerBits = try reader.u32()
        guard layerBits & ~SandboxLayers.all.rawValue == 0 else {
            throw SandboxProfileDecodingError("undefined sandbox layer bits 0x\(String(layerBits & ~SandboxLayers.all.rawValue, radix: 16))")
        }
        layers = SandboxLayers(rawValue: layerBits)
        let uid = try reader.u32()
        runAsUID = uid == Self.unchanged ? nil : uid
        let gid = try reader.u32()
        runAsGID = gid == Self.unchanged ? nil : gid
        memoryBytes = try reader.u64()
        maxTasks = try reader.u32()
        maxOpenFiles = try reader.u32()
        switch try reader.u8() {
        case 0: allowNetwork = false
        case 1: allowNetwork = true
        case let other: throw SandboxProfileDecodingError("allowNetwork is \(other), not a boolean")
        }
        stateDirectory = try reader.string()
        readPaths = try reader.stringList()
        writePaths = try reader.stringList()
        cgroupPath = try reader.string()
        supplementaryGroups = try reader.u32List()
        guard reader.remaining == 0 else {
            throw SandboxProfileDecodingError("\(reader.remaining) extra bytes after the sandbox profile")
        }
    }
}

/// A sandbox profile that does not decode.
public struct SandboxProfileDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What is wrong, e.g. "truncated sandbox profile".
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The state of one sandbox layer, as reported in `W_READY` and in status.
public struct SandboxLayerState: Sendable, Equatable, Hashable {
    /// `user`, `mount`, `pid`, `network`, `ipc`, `uts`, `landlock`, `seccomp`, `limits`,
    /// `cgroup`, `no_new_privs` or `run_as`.
    public var name: String
    /// `active`, `off` (relaxed by the profile), or `unavailable: <reason>`.
    public var state: String

    public init(name: String, state: String) {
        self.name = name
        self.state = state
    }
}

// MARK: - The little-endian codec of PROTOCOL.md §4 (local, so this module stays small)

struct LittleEndianWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ value: String) {
        u32(UInt32(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }
}

struct LittleEndianReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    private mutating func take(_ count: Int) throws(SandboxProfileDecodingError) -> ArraySlice<UInt8> {
        guard count <= remaining else { throw SandboxProfileDecodingError("truncated sandbox profile") }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    mutating func u8() throws(SandboxProfileDecodingError) -> UInt8 { try take(1).first! }

    mutating func u32() throws(SandboxProfileDecodingError) -> UInt32 {
        try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func u64() throws(SandboxProfileDecodingError) -> UInt64 {
        try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func string() throws(SandboxProfileDecodingError) -> String {
        let count = Int(try u32())
        let raw = try take(count)
        guard !raw.contains(0), let text = String(validating: raw, as: UTF8.self) else {
            throw SandboxProfileDecodingError("a sandbox profile string is not valid UTF-8 or contains NUL")
        }
        return text
    }

    mutating func u32List() throws(SandboxProfileDecodingError) -> [UInt32] {
        let count = Int(try u32())
        guard count <= remaining / 4 else { throw SandboxProfileDecodingError("list count \(count) exceeds the sandbox profile") }
        var result: [UInt32] = []
        result.reserveCapacity(count)
        for _ in 0..<count { result.append(try u32()) }
        return result
    }

    mutating func stringList() throws(SandboxProfileDecodingError) -> [String] {
        let count = Int(try u32())
        // Each string takes at least 4 bytes: refuse counts the remaining bytes cannot hold.
        guard count <= remaining / 4 else { throw SandboxProfileDecodingError("list count \(count) exceeds the sandbox profile") }
        var result: [String] = []
        result.reserveCapacity(count)
        for _ in 0..<count { result.append(try string()) }
        return result
    }
}
