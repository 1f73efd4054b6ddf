import AirlockClient
import Glibc

/// A WS-Management fault, answered with HTTP 500 (400 for a malformed request) in the form
/// Windows uses: `s:Code` with a `w:` subcode, `s:Reason`, and `s:Detail/f:WSManFault`
/// carrying the numeric code that both pywinrm and pypsrp surface.
struct WSManFault: Error, Sendable {
    /// `s:Sender` or `s:Receiver`.
    var isSenderFault: Bool
    /// The `w:` subcode's local name (`InvalidSelectors`, `TimedOut`, ...).
    var subcode: String
    /// The WSMan/Win32 error code (`f:WSManFault/@Code`).
    var code: UInt32
    /// The human sentence (`s:Reason/s:Text` and `f:Message`).
    var message: String
    /// `w:FaultDetail`, when there is one.
    var detail: String?
    /// The HTTP status: 500, or 400 for requests that could not be read.
    var httpStatus: Int = 500

    init(isSenderFault: Bool, subcode: String, code: UInt32, message: String, detail: String? = nil, httpStatus: Int = 500) {
        self.isSenderFault = isSenderFault
        self.subcode = subcode
        self.code = code
        self.message = message
        self.detail = detail
        self.httpStatus = httpStatus
    }

    /// Receive had nothing to report within OperationTimeout (2150858793); clients retry.
    static func timedOut() -> WSManFault {
        WSManFault(
            isSenderFault: false, subcode: "TimedOut", code: WSManError.operationTimedOut,
            message: "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.")
    }

    /// An unknown shell (2150858843).
    static func unknownShell(_ id: String) -> WSManFault {
        WSManFault(
            isSenderFault: true, subcode: "InvalidSelectors", code: WSManError.invalidSelectors,
            message: "The request for the Windows Remote Shell with ShellId \(id) failed because the shell was not found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. Provide the correct ShellId or create a new shell and retry the operation.",
            detail: "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors")
    }

    /// An unknown command of a known shell (2150858843).
    static func unknownCommand(_ id: String, shell: String) -> WSManFault {
        WSManFault(
            isSenderFault: true, subcode: "InvalidSelectors", code: WSManError.invalidSelectors,
            message: "The request for command \(id) of the Windows Remote Shell with ShellId \(shell) failed because the command was not found on the server.",
            detail: "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors")
    }

    /// An action this gateway does not implement (0x80338002, 2150858754).
    static func actionNotSupported(_ action: String) -> WSManFault {
        WSManFault(
            isSenderFault: true, subcode: "ActionNotSupported", code: 0x8033_8002,
            message: "The WS-Management service does not support the action \(action.isEmpty ? "(none)" : action).",
            detail: "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/ActionMismatch")
    }

    /// A request whose body is not a usable SOAP 1.2 WS-Management envelope (HTTP 400).
    static func malformed(_ reason: String) -> WSManFault {
        WSManFault(
            isSenderFault: true, subcode: "InvalidMessageInformationHeader", code: WSManError.wsmanInvalidParameter,
            message: "The WS-Management service cannot process the request: \(reason)", httpStatus: 400)
    }

    /// A request that is readable but lacks or misuses an element.
    static func invalidParameter(_ reason: String) -> WSManFault {
        WSManFault(
            isSenderFault: true, subcode: "InvalidParameter", code: WSManError.wsmanInvalidParameter,
            message: "The WS-Management service cannot process the request: \(reason)")
    }

    /// The fault for an error airlockd, the plug-in or the connection to airlockd reported,
    /// with its code unchanged.
    init(_ error: AirlockError) {
        var text = error.message
        if let extended = error.extendedInformation, !extended.isEmpty, extended != error.message {
            text += text.isEmpty ? extended : " (plug-in says: \(extended))"
        }
        if text.isEmpty { text = error.name }
        switch error.code {
        case WSManError.operationTimedOut:
            self.init(isSenderFault: false, subcode: "TimedOut", code: error.code, message: text)
        case WSManError.invalidSelectors:
            self.init(isSenderFault: true, subcode: "InvalidSelectors", code: error.code, message: text)
        case WSManError.accessDenied:
            self.init(isSenderFault: true, subcode: "AccessDenied", code: error.code, message: text)
        case WSManError.invalidResourceURI, WSManError.resourceNotFound:
            self.init(isSenderFault: true, subcode: "DestinationUnreachable", code: error.code, message: text,
                      detail: "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI")
        case WSManError.quotaLimit, WSManError.quotaMaxShells, WSManError.quotaMaxOperations, WSManError.quotaUser:
            self.init(isSenderFault: false, subcode: "QuotaLimit", code: error.code, message: text)
        default:
            self.init(isSenderFault: false, subcode: "InternalError", code: error.code, message: text)
        }
    }

    /// The SOAP body content: the `s:Fault` element.
    func write(to xml: inout XMLWriter, machine: String) {
        xml.open("s:Fault")
        xml.open("s:Code")
        xml.element("s:Value", text: isSenderFault ? "s:Sender" : "s:Receiver")
        xml.open("s:Subcode")
        xml.element("s:Value", text: "w:" + subcode)
        xml.close("s:Subcode")
        xml.close("s:Code")
        xml.open("s:Reason")
        xml.element("s:Text", ["xml:lang": "en-US"], text: message)
        xml.close("s:Reason")
        xml.open("s:Detail")
        if let detail { xml.element("w:FaultDetail", text: detail) }
        xml.open("f:WSManFault", ["xmlns:f": Namespace.fault, "Code": String(code), "Machine": machine])
        xml.element("f:Message", text: message)
        xml.close("f:WSManFault")
        xml.close("s:Detail")
        xml.close("s:Fault")
    }
}

/// This machine's name, for `f:WSManFault/@Machine`.
let machineName: String = {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}()
