import AirlockClient
import Foundation

/// The WS-Management header of one request, read by qualified name; unknown headers are
/// ignored.
struct WSManRequest: Sendable {
    /// `a:Action`.
    var action: String
    /// `a:MessageID`, verbatim (echoed as `a:RelatesTo`).
    var messageID: String?
    /// `w:ResourceURI`.
    var resourceURI: String?
    /// `w:MaxEnvelopeSize`, when given.
    var maxEnvelopeSize: Int?
    /// `w:OperationTimeout`, when given and valid.
    var operationTimeout: Duration?
    /// `w:SelectorSet/w:Selector`, by `Name`.
    var selectors: [String: String]
    /// `w:OptionSet/w:Option`, in order.
    var options: [WSManOption]
    /// Whether the option set said `mustUnderstand="true"`.
    var optionsMustUnderstand: Bool
    /// `w:Locale/@xml:lang` and `p:DataLocale/@xml:lang`.
    var locale: String?
    var dataLocale: String?
    /// The SOAP body.
    var body: XMLNode

    init(_ envelope: SOAPEnvelope) {
        let header = envelope.header
        action = header.childText(Namespace.addressing, "Action") ?? ""
        messageID = header.childText(Namespace.addressing, "MessageID")
        resourceURI = header.childText(Namespace.wsman, "ResourceURI")
        maxEnvelopeSize = header.childText(Namespace.wsman, "MaxEnvelopeSize").flatMap { Int($0) }
        operationTimeout = header.childText(Namespace.wsman, "OperationTimeout").flatMap(XSDuration.parse)
        var selectors: [String: String] = [:]
        for selector in header.child(Namespace.wsman, "SelectorSet")?.children(Namespace.wsman, "Selector") ?? [] {
            if let name = selector.attribute("Name") {
                selectors[name] = selector.text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        self.selectors = selectors
        let optionSet = header.child(Namespace.wsman, "OptionSet")
        options = (optionSet?.children(Namespace.wsman, "Option") ?? []).compactMap { option in
            guard let name = option.attribute("Name") else { return nil }
            return WSManOption(name: name, value: option.text, mustComply: isTrue(option.attribute("MustComply")))
        }
        optionsMustUnderstand = isTrue(optionSet?.attribute("mustUnderstand"))
        locale = header.child(Namespace.wsman, "Locale")?.attribute("lang")
        dataLocale = header.child(Namespace.microsoftWSMan, "DataLocale")?.attribute("lang")
        body = envelope.body
    }
}

/// Whether an XML boolean says true, compared without regard to case (`true`, `TRUE`, `True`, `1`).
func isTrue(_ value: String?) -> Bool {
    guard let value = value?.trimmingCharacters(in: .whitespaces).lowercased() else { return false }
    return value == "true" || value == "1"
}

/// `xs:duration` values (`PT20S`, `PT1M30.5S`, `P1DT2H`), and bare seconds as pywinrm sends
/// for `rsp:IdleTimeOut`.
enum XSDuration {
    /// The duration, or nil when `text` is neither an `xs:duration` nor a number of seconds.
    /// Negative durations and years/months are refused.
    static func parse(_ text: String) -> Duration? {
        let text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let seconds = Double(text) {
            return seconds >= 0 && seconds.isFinite ? .milliseconds(Int64(seconds * 1000)) : nil
        }
        guard text.hasPrefix("P") else { return nil }
        var milliseconds = 0.0
        var number = ""
        var inTime = false
        var sawComponent = false
        for character in text.dropFirst() {
            switch character {
            case "T":
                guard !inTime, number.isEmpty else { return nil }
                inTime = true
            case "0"..."9", ".":
                number.append(character)
            case "D", "H", "M", "S":
                guard let value = Double(number) else { return nil }
                number = ""
                sawComponent = true
                switch (character, inTime) {
                case ("D", false): milliseconds += value * 86_400_000
                case ("H", true): milliseconds += value * 3_600_000
                case ("M", true): milliseconds += value * 60_000
                case ("S", true): milliseconds += value * 1000
                default: return nil  // months or years: not a fixed length
                }
            default:
                return nil
            }
        }
        guard sawComponent, number.isEmpty, milliseconds.isFinite, milliseconds < 1e15 else { return nil }
        return .milliseconds(Int64(milliseconds))
    }
}
