/// Writes SOAP 1.2 answers: the envelope with the namespaces both clients expect, the
/// answering action, and `a:RelatesTo` echoing the request's `a:MessageID` verbatim.
enum SOAPAnswer {
    /// A complete envelope; `body` writes the content of `s:Body`.
    static func envelope(action: String, relatesTo: String?, body: (inout XMLWriter) -> Void) -> [UInt8] {
        var xml = XMLWriter(capacity: 1024)
        xml.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        xml.open("s:Envelope", [
            "xmlns:s": Namespace.soap, "xmlns:a": Namespace.addressing, "xmlns:w": Namespace.wsman,
            "xmlns:x": Namespace.transfer, "xmlns:rsp": Namespace.shell, "xmlns:p": Namespace.microsoftWSMan,
        ])
        xml.open("s:Header")
        xml.element("a:Action", text: action)
        xml.element("a:MessageID", text: "uuid:" + newUUID())
        xml.element("a:To", text: WSManAction.anonymous)
        if let relatesTo { xml.element("a:RelatesTo", text: relatesTo) }
        xml.close("s:Header")
        xml.open("s:Body")
        body(&xml)
        xml.close("s:Body")
        xml.close("s:Envelope")
        return xml.bytes
    }

    /// A fault envelope.
    static func fault(_ fault: WSManFault, relatesTo: String?) -> [UInt8] {
        envelope(action: WSManAction.fault, relatesTo: relatesTo) { fault.write(to: &$0, machine: machineName) }
    }
}

/// A random (version 4) UUID in upper case, as Windows writes ShellIds and CommandIds.
func newUUID() -> String {
    var generator = SystemRandomNumberGenerator()
    var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    bytes[6] = (bytes[6] & 0x0F) | 0x40
    bytes[8] = (bytes[8] & 0x3F) | 0x80
    let hex = Array("0123456789ABCDEF".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(36)
    for (index, byte) in bytes.enumerated() {
        if index == 4 || index == 6 || index == 8 || index == 10 { out.append(UInt8(ascii: "-")) }
        out.append(hex[Int(byte >> 4)])
        out.append(hex[Int(byte & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}
