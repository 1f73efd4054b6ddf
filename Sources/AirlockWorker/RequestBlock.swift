import AirlockProtocol
import CWSMan
import Glibc

/// The six operation requests the supervisor sends, as the worker dispatches them.
enum OperationKind: UInt8, Sendable {
    case shell, command, send, receive, signal, connect

    /// The operation's name in messages: `Shell`, `Command`, ...
    var name: String {
        switch self {
        case .shell: "Shell"
        case .command: "Command"
        case .send: "Send"
        case .receive: "Receive"
        case .signal: "Signal"
        case .connect: "Connect"
        }
    }

    /// The entry point that serves it.
    var entryPointName: String { "WSManPlugin" + name }

    /// The kind of a worker request message (`W_SHELL` ... `W_CONNECT`); `nil` for any
    /// other message.
    @inline(__always)
    init?(_ type: MessageType) {
        switch type {
        case .workerShell: self = .shell
        case .workerCommand: self = .command
        case .workerSend: self = .send
        case .workerReceive: self = .receive
        case .workerSignal: self = .signal
        case .workerConnect: self = .connect
        default: return nil
        }
    }

    /// Cancellation order: children (0) before commands (1) before shells (2).
    var cancellationRank: Int {
        switch self {
        case .send, .receive, .signal, .connect: 0
        case .command: 1
        case .shell: 2
        }
    }
}

/// Where a request's parts live inside its block: the `WSMAN_PLUGIN_REQUEST` and the
/// arguments of the entry point beyond the request and the contexts.
struct RequestBlock {
    /// The block's start, which is also the `WSMAN_PLUGIN_REQUEST` (the plug-in's key).
    var request: UnsafeMutablePointer<WSMAN_PLUGIN_REQUEST>
    /// The bytes of memory it has (at least what its layout uses).
    var size: Int
    /// The entry point's `flags` argument.
    var flags: UInt32 = 0
    /// Shell: the startup information and `inboundShellInformation`; Connect: the
    /// inbound information (in `data`); Send: the inbound data.
    var startupInfo: UnsafeMutablePointer<WSMAN_SHELL_STARTUP_INFO_V11>?
    var data: UnsafeMutablePointer<WSMAN_DATA>?
    /// Command: the command line; Send: the stream; Signal: the code.
    var text: UnsafePointer<UInt16>?
    /// Command: the arguments (NULL when there are none).
    var arguments: UnsafeMutablePointer<WSMAN_COMMAND_ARG_SET>?
    /// Receive: the streams (NULL when empty: every stream).
    var streamSet: UnsafeMutablePointer<WSMAN_STREAM_ID_SET>?
    /// The requested locales (inside the block) and their lengths in code units.
    var locale: UnsafePointer<UInt16>?
    var localeLength: Int = 0
    var dataLocale: UnsafePointer<UInt16>?
    var dataLocaleLength: Int = 0

    /// Lays out `request` in the `capacity` bytes at `base` (at least
    /// ``requiredSize(_:kind:)``): the `WSMAN_PLUGIN_REQUEST`, the sender details, the
    /// operation information (selectors ShellId/CommandId and the options), the kind's
    /// parameters and every string (UTF-16LE, NUL-terminated), read straight from the
    /// packet. `shutdownNotification` is FALSE and `shutdownNotificationHandle` is
    /// `cancelEvent`. The block's ``size`` is `capacity`.
    static func layOut(
        _ request: borrowing WorkerRequestPacket, kind: OperationKind, into base: UnsafeMutableRawPointer, capacity: Int,
        cancelEvent: Int32
    ) -> RequestBlock {
        var arena = BlockArena(base: base, capacity: capacity)
        var block = layOut(request, kind: kind, in: &arena)
        block.size = capacity
        block.setCancelEvent(cancelEvent)
        return block
    }

    /// The bytes a block for `request` needs. A small packet (the common case) gets a
    /// bound computed from its size; a larger one is measured, so that a large Send does
    /// not take four times its size.
    static func requiredSize(_ request: borrowing WorkerRequestPacket, kind: OperationKind) -> Int {
        guard request.byteCount <= smallPacketLimit else { return measuredSize(request, kind: kind) }
        let bound = fixedBound + 4 * request.byteCount
        #if DEBUG
        // Debug builds (the tests) check the bound on every request.
        let measured = measuredSize(request, kind: kind)
        precondition(measured <= bound, "the request block bound (\(bound) bytes) is below its size (\(measured) bytes)")
        #endif
        return bound
    }

    /// The exact size of the block of `request`: the layout run without memory.
    private static func measuredSize(_ request: borrowing WorkerRequestPacket, kind: OperationKind) -> Int {
        var measure = BlockMeasure()
        _ = layOut(request, kind: kind, in: &measure)
        return max(measure.size, MemoryLayout<WSMAN_PLUGIN_REQUEST>.size)
    }

    /// Packets up to this size get a block of ``fixedBound`` + 4 bytes per packet byte.
    private static let smallPacketLimit = 2048

    /// What a block holds whatever the packet says: its structures (each at most once),
    /// the selector names and values (20 digits at most), and alignment padding (at most
    /// 7 bytes for each of fewer than 32 reservations of structures and arrays).
    ///
    /// Everything else comes from the packet and takes at most 4 block bytes per packet
    /// byte: a string of n bytes (4 + n on the wire) takes 2n + 2 bytes of UTF-16 and
    /// NUL, plus one byte of padding; a list element adds at most a pointer (8) or its
    /// structure (an option: 24 bytes for at least 9 on the wire; a variable: 16 for 8);
    /// binary data takes its own size.
    private static var fixedBound: Int {
        MemoryLayout<WSMAN_PLUGIN_REQUEST>.stride + MemoryLayout<WSMAN_SENDER_DETAILS>.stride
            + 2 * MemoryLayout<WSMAN_KEY>.stride + MemoryLayout<WSMAN_OPERATION_INFO>.stride
            + MemoryLayout<WSMAN_SHELL_STARTUP_INFO_V11>.stride + MemoryLayout<WSMAN_ENVIRONMENT_VARIABLE_SET>.stride
            + 2 * MemoryLayout<WSMAN_STREAM_ID_SET>.stride + MemoryLayout<WSMAN_COMMAND_ARG_SET>.stride
            + MemoryLayout<WSMAN_DATA>.stride
            + MemoryLayout.size(ofValue: shellIDName) + MemoryLayout.size(ofValue: commandIDName) + 2 * 21 * 2
            + 32 * 7
    }

    /// `shutdownNotificationHandle`: the eventfd that is signalled when the request is
    /// cancelled.
    func setCancelEvent(_ fd: Int32) {
        request.pointee.shutdownNotificationHandle = UnsafeMutableRawPointer(bitPattern: Int(fd))
    }

    /// The one layout routine, run twice: to measure (counting only field sizes: a string
    /// of n UTF-8 bytes takes at most n + 1 UTF-16 code units), then to fill the allocation.
    private static func layOut<Space: BlockSpace>(
        _ request: borrowing WorkerRequestPacket, kind: OperationKind, in space: inout Space
    ) -> RequestBlock {
        // The request comes first, so the block's address is the request's.
        let requestPointer = space.reserve(WSMAN_PLUGIN_REQUEST.self)
        let context = request.context
        let sender = space.reserve(WSMAN_SENDER_DETAILS.self)
        place(WSMAN_SENDER_DETAILS(
            senderName: space.wide(context.senderName),
            authenticationMechanism: space.wide(context.authenticationMechanism),
            certificateDetails: nil, clientToken: nil,
            httpURL: context.httpURL.utf8.isEmpty ? nil : space.wide(context.httpURL)), at: sender)

        // Selectors: the shell's id, and the command's when the request addresses one.
        let selectorCount = kind == .shell ? 1 : (request.commandID != 0 ? 2 : 1)
        let keys = space.reserve(WSMAN_KEY.self, count: selectorCount)
        place(WSMAN_KEY(key: space.wide(units: shellIDName), value: space.wide(decimal: request.shellID)), at: keys, index: 0)
        if selectorCount == 2 {
            place(WSMAN_KEY(key: space.wide(units: commandIDName), value: space.wide(decimal: request.commandID)), at: keys, index: 1)
        }
        let options = request.options
        let optionArray = options.isEmpty ? nil : space.reserve(WSMAN_OPTION.self, count: options.count)
        for (index, option) in options.enumerated() {
            place(WSMAN_OPTION(
                name: space.wide(option.name), value: space.wide(option.value), mustComply: option.mustComply ? 1 : 0), at: optionArray, index: index)
        }
        let operationInfo = space.reserve(WSMAN_OPERATION_INFO.self)
        place(WSMAN_OPERATION_INFO(
            fragment: WSMAN_FRAGMENT(path: nil, dialect: nil),
            filter: WSMAN_FILTER(filter: nil, dialect: nil),
            selectorSet: WSMAN_SELECTOR_SET(numberKeys: UInt32(selectorCount), keys: keys),
            optionSet: WSMAN_OPTION_SET(
                optionsCount: UInt32(options.count), options: optionArray,
                optionsMustUnderstand: request.optionsMustUnderstand ? 1 : 0),
            reserved: nil,
            version: WSMAN_OPERATION_INFOV1), at: operationInfo)

        var block = RequestBlock(request: requestPointer ?? UnsafeMutablePointer(bitPattern: 8)!, size: 0)
        (block.locale, block.localeLength) = space.wideCounted(context.locale)
        (block.dataLocale, block.dataLocaleLength) = space.wideCounted(context.dataLocale)
        place(WSMAN_PLUGIN_REQUEST(
            senderDetails: sender,
            locale: block.locale,
            resourceUri: space.wide(context.resourceURI),
            operationInfo: operationInfo,
            shutdownNotification: 0,
            shutdownNotificationHandle: nil,
            dataLocale: block.dataLocale), at: requestPointer)

        switch kind {
        case .shell:
            block.flags = WSMAN_FLAG_REQUESTED_API_VERSION_1_1
            let inputStreams = space.streamSet(request.inputStreams)
            let outputStreams = space.streamSet(request.outputStreams)
            let environment = request.environment
            let variables = environment.isEmpty ? nil : space.reserve(WSMAN_ENVIRONMENT_VARIABLE.self, count: environment.count)
            for (index, variable) in environment.enumerated() {
                place(WSMAN_ENVIRONMENT_VARIABLE(name: space.wide(variable.name), value: space.wide(variable.value)), at: variables, index: index)
            }
            let variableSet = space.reserve(WSMAN_ENVIRONMENT_VARIABLE_SET.self)
            place(WSMAN_ENVIRONMENT_VARIABLE_SET(varsCount: UInt32(environment.count), vars: variables), at: variableSet)
            block.startupInfo = space.reserve(WSMAN_SHELL_STARTUP_INFO_V11.self)
            place(WSMAN_SHELL_STARTUP_INFO_V11(
                inputStreamSet: inputStreams, outputStreamSet: outputStreams, idleTimeoutMs: request.idleTimeoutMs,
                workingDirectory: request.workingDirectory.flatMap { space.wide($0) },
                variableSet: variableSet,
                name: request.name.flatMap { space.wide($0) }), at: block.startupInfo)
            block.data = space.data(request.data)
        case .command:
            block.text = space.wide(request.text)
            let arguments = request.arguments
            if !arguments.isEmpty {
                let array = space.reserve(UnsafePointer<UInt16>?.self, count: arguments.count)
                for (index, argument) in arguments.enumerated() {
                    place(space.wide(argument), at: array, index: index)
                }
                block.arguments = space.reserve(WSMAN_COMMAND_ARG_SET.self)
                place(WSMAN_COMMAND_ARG_SET(argsCount: UInt32(arguments.count), args: array), at: block.arguments)
            }
        case .send:
            block.flags = request.endOfStream ? WSMAN_FLAG_SEND_NO_MORE_DATA : 0
            block.text = space.wide(request.text)
            block.data = space.data(request.data, evenWhenNone: true)
        case .receive:
            block.streamSet = request.streams.isEmpty ? nil : space.streamSet(request.streams)
        case .signal:
            block.text = space.wide(request.text)
        case .connect:
            block.data = space.data(request.data)
        }
        return block
    }
}

/// Memory for a request block: measured first, then allocated once and filled.
protocol BlockSpace {
    /// `size` bytes aligned to `alignment`, or `nil` while only measuring.
    mutating func reserve(bytes size: Int, alignment: Int) -> UnsafeMutableRawPointer?
}

/// Counts the bytes a layout needs.
struct BlockMeasure: BlockSpace {
    var size = 0
    mutating func reserve(bytes size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        self.size = (self.size + alignment - 1) & ~(alignment - 1) + size
        return nil
    }
}

/// Hands out consecutive parts of one allocation.
struct BlockArena: BlockSpace {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    var used = 0
    mutating func reserve(bytes size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        let start = (used + alignment - 1) & ~(alignment - 1)
        precondition(start + size <= capacity, "request block layout exceeds its measured size")
        used = start + size
        return base + start
    }
}

extension BlockSpace {
    /// Room for `count` values of `type` (uninitialized: the C types stored are trivial).
    mutating func reserve<T>(_ type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T>? {
        reserve(bytes: MemoryLayout<T>.stride * count, alignment: MemoryLayout<T>.alignment)?
            .bindMemory(to: T.self, capacity: count)
    }

    /// A NUL-terminated UTF-16 copy of `text`.
    mutating func wide(_ text: WireString) -> UnsafePointer<UInt16>? {
        wideCounted(text).pointer
    }

    /// A NUL-terminated UTF-16 copy of `text` and its length in code units (without the
    /// NUL). Room is reserved for one unit per UTF-8 byte, which any UTF-8 needs at most:
    /// exact for ASCII, which is widened byte by byte.
    mutating func wideCounted(_ text: WireString) -> (pointer: UnsafePointer<UInt16>?, count: Int) {
        let utf8 = text.utf8
        guard let storage = reserve(UInt16.self, count: utf8.count + 1) else { return (nil, 0) }
        var count = widenASCII(utf8, into: storage)
        if count < utf8.count {
            // Beyond ASCII (the packet's strings are valid UTF-8: checked when it was read).
            count = 0
            for unit in text.string.utf16 {
                storage[count] = unit
                count += 1
            }
        }
        storage[count] = 0
        return (UnsafePointer(storage), count)
    }

    /// A copy of `units`, a tuple of `UInt16` code units ending with a NUL (a selector name).
    mutating func wide<Units>(units: Units) -> UnsafePointer<UInt16>? {
        guard let storage = reserve(bytes: MemoryLayout<Units>.size, alignment: MemoryLayout<UInt16>.alignment) else { return nil }
        withUnsafeBytes(of: units) { storage.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return UnsafePointer(storage.assumingMemoryBound(to: UInt16.self))
    }

    /// `number` in decimal, NUL-terminated UTF-16 (a selector value).
    mutating func wide(decimal number: UInt64) -> UnsafePointer<UInt16>? {
        var digits = 1
        var rest = number / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        guard let storage = reserve(UInt16.self, count: digits + 1) else { return nil }
        var value = number
        for index in stride(from: digits - 1, through: 0, by: -1) {
            storage[index] = 0x30 + UInt16(value % 10)
            value /= 10
        }
        storage[digits] = 0
        return UnsafePointer(storage)
    }

    /// A `WSMAN_STREAM_ID_SET` of `names`.
    mutating func streamSet(_ names: WireList<WireString>) -> UnsafeMutablePointer<WSMAN_STREAM_ID_SET>? {
        let identifiers = names.isEmpty ? nil : reserve(UnsafePointer<UInt16>?.self, count: names.count)
        for (index, name) in names.enumerated() {
            place(wide(name), at: identifiers, index: index)
        }
        let set = reserve(WSMAN_STREAM_ID_SET.self)
        place(WSMAN_STREAM_ID_SET(streamIDsCount: UInt32(names.count), streamIDs: identifiers), at: set)
        return set
    }

    /// A `WSMAN_DATA` holding `value` (text NUL-terminated, `bufferLength` without the
    /// NUL); `nil` for `.none` unless `evenWhenNone`.
    mutating func data(_ value: WireData, evenWhenNone: Bool = false) -> UnsafeMutablePointer<WSMAN_DATA>? {
        var data = WSMAN_DATA()
        switch value {
        case .none:
            if !evenWhenNone { return nil }
            data.type = WSMAN_DATA_NONE
        case .text(let text):
            data.type = WSMAN_DATA_TYPE_TEXT
            let (buffer, count) = wideCounted(text)
            data.text = WSMAN_DATA_TEXT(bufferLength: UInt32(count), buffer: buffer)
        case .binary(let bytes):
            data.type = WSMAN_DATA_TYPE_BINARY
            var storage: UnsafeMutablePointer<UInt8>? = nil
            if !bytes.isEmpty {
                storage = reserve(UInt8.self, count: bytes.count)
                if let storage {
                    UnsafeMutableRawPointer(storage).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                }
            }
            data.binaryData = WSMAN_DATA_BINARY(dataLength: UInt32(bytes.count), data: storage)
        case .dword(let number):
            data.type = WSMAN_DATA_TYPE_DWORD
            data.number = number
        }
        let pointer = reserve(WSMAN_DATA.self)
        place(data, at: pointer)
        return pointer
    }
}

/// The selector names as NUL-terminated UTF-16 constants (no string conversion per request).
private let shellIDName: (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) =
    (0x53, 0x68, 0x65, 0x6C, 0x6C, 0x49, 0x64, 0)  // "ShellId"
private let commandIDName: (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) =
    (0x43, 0x6F, 0x6D, 0x6D, 0x61, 0x6E, 0x64, 0x49, 0x64, 0)  // "CommandId"

/// Widens the ASCII start of `utf8` into `storage`, sixteen bytes per step (eight for a
/// string shorter than sixteen); returns how many bytes it widened (all of them, unless a
/// byte beyond ASCII stops it).
@inline(__always)
func widenASCII(_ utf8: UnsafeRawBufferPointer, into storage: UnsafeMutablePointer<UInt16>) -> Int {
    guard let source = utf8.baseAddress else { return 0 }
    let target = UnsafeMutableRawPointer(storage)
    let total = utf8.count
    /// Widens the sixteen bytes at `offset` if they are ASCII (one vector zero-extension).
    @inline(__always)
    func widenVector(at offset: Int) -> Bool {
        let bytes = source.loadUnaligned(fromByteOffset: offset, as: SIMD16<UInt8>.self)
        let halves = unsafeBitCast(bytes, to: SIMD2<UInt64>.self)
        if (halves[0] | halves[1]) & 0x8080_8080_8080_8080 != 0 { return false }
        target.storeBytes(of: SIMD16<UInt16>(truncatingIfNeeded: bytes), toByteOffset: 2 * offset, as: SIMD16<UInt16>.self)
        return true
    }
    /// Widens the eight bytes at `offset` if they are ASCII.
    @inline(__always)
    func widenWord(at offset: Int) -> Bool {
        let word = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        if word & 0x8080_8080_8080_8080 != 0 { return false }
        target.storeBytes(of: spread(word).littleEndian, toByteOffset: 2 * offset, as: UInt64.self)
        target.storeBytes(of: spread(word >> 32).littleEndian, toByteOffset: 2 * offset + 8, as: UInt64.self)
        return true
    }
    /// The low four bytes of `word` as four 16-bit lanes.
    @inline(__always)
    func spread(_ word: UInt64) -> UInt64 {
        var lanes = word & 0xFFFF_FFFF
        lanes = (lanes | (lanes << 16)) & 0x0000_FFFF_0000_FFFF
        return (lanes | (lanes << 8)) & 0x00FF_00FF_00FF_00FF
    }
    var count = 0
    if total >= 16 {
        while count + 16 <= total && widenVector(at: count) {
            count += 16
        }
        // The last bytes as one vector overlapping what is done already.
        if count + 16 > total && count < total && widenVector(at: total - 16) {
            return total
        }
        if count == total { return total }
    } else if total >= 8 {
        // Two words, the second overlapping the first.
        if widenWord(at: 0) {
            count = 8
            if widenWord(at: total - 8) { return total }
        }
    }
    while count < total {
        let byte = source.load(fromByteOffset: count, as: UInt8.self)
        if byte >= 0x80 { break }
        storage[count] = UInt16(byte)
        count += 1
    }
    return count
}

/// Stores `value` at `pointer[index]` when there is memory (not while measuring). A
/// function, not `pointer?[index] = value`: optional chaining would skip evaluating
/// `value`, and with it the strings the measuring pass must count.
@inline(__always)
func place<T>(_ value: T, at pointer: UnsafeMutablePointer<T>?, index: Int = 0) {
    pointer?[index] = value
}
