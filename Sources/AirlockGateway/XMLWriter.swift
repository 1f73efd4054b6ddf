/// A small XML writer: elements, attributes and text, escaped as XML requires.
///
/// It writes straight into a byte array so a SOAP answer is built without intermediate
/// strings; the caller is responsible for balancing ``open(_:_:)`` and ``close(_:)``.
struct XMLWriter {
    /// The document written so far (UTF-8).
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 2048) {
        bytes.reserveCapacity(capacity)
    }

    /// Writes text that needs no escaping (markup the writer itself produces).
    mutating func raw(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    /// Writes `<name a="v" ...>`, or `<name .../>` when `selfClosing`.
    mutating func open(_ name: String, _ attributes: KeyValuePairs<String, String> = [:], selfClosing: Bool = false) {
        bytes.append(UInt8(ascii: "<"))
        raw(name)
        for (key, value) in attributes {
            bytes.append(UInt8(ascii: " "))
            raw(key)
            raw("=\"")
            escape(value, inAttribute: true)
            bytes.append(UInt8(ascii: "\""))
        }
        raw(selfClosing ? "/>" : ">")
    }

    /// Writes `</name>`.
    mutating func close(_ name: String) {
        raw("</")
        raw(name)
        bytes.append(UInt8(ascii: ">"))
    }

    /// Writes `<name attributes>text</name>`.
    mutating func element(_ name: String, _ attributes: KeyValuePairs<String, String> = [:], text: String) {
        open(name, attributes)
        escape(text, inAttribute: false)
        close(name)
    }

    /// Writes escaped character data.
    mutating func text(_ text: String) {
        escape(text, inAttribute: false)
    }

    /// Writes bytes that are already valid character data (base64).
    mutating func trustedASCII(_ ascii: some Sequence<UInt8>) {
        bytes.append(contentsOf: ascii)
    }

    private mutating func escape(_ text: String, inAttribute: Bool) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "&"): raw("&amp;")
            case UInt8(ascii: "<"): raw("&lt;")
            case UInt8(ascii: ">"): raw("&gt;")
            case UInt8(ascii: "\"") where inAttribute: raw("&quot;")
            case UInt8(ascii: "\n") where inAttribute: raw("&#10;")
            case UInt8(ascii: "\r"): raw("&#13;")
            case UInt8(ascii: "\t") where inAttribute: raw("&#9;")
            case 0..<0x20 where byte != 0x09 && byte != 0x0A:
                // Not allowed in XML 1.0: replace rather than produce a document nobody parses.
                bytes.append(UInt8(ascii: "?"))
            default: bytes.append(byte)
            }
        }
    }
}
