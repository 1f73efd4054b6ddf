// libFuzzer entry point for the wire-protocol decoders (client frames and worker frames
// share them). Built by run-fuzz.sh together with Sources/AirlockProtocol and
// Tests/AirlockProtocolTests/CodecProperties.swift as one module; not part of the
// SwiftPM package.

/// Decodes `data` as one packet (`Frame.decode`) and as a stream fed to `FrameDecoder`
/// whole and in pieces, with a 64 KiB frame limit, and traps when any property of
/// ``CodecProperties`` fails. A trap anywhere in the codec is a finding too.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let problems = CodecProperties.violations(in: input)
    if !problems.isEmpty {
        fatalError("codec property violated: " + problems.joined(separator: "; "))
    }
    return 0
}
