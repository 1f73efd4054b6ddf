/// The XML namespaces and URIs of WS-Management's WinRS shell, as WinRM clients use them.
enum Namespace {
    /// SOAP 1.2.
    static let soap = "http://www.w3.org/2003/05/soap-envelope"
    /// WS-Addressing (2004/08).
    static let addressing = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
    /// DMTF WS-Management.
    static let wsman = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
    /// Microsoft's WS-Management extensions.
    static let microsoftWSMan = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"
    /// WS-Transfer.
    static let transfer = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
    /// The Windows Remote Shell.
    static let shell = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
    /// The WSManFault detail.
    static let fault = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
    /// XML itself (`xml:lang`).
    static let xml = "http://www.w3.org/XML/1998/namespace"
}

/// The `a:Action` URIs the gateway serves, and those of its answers.
enum WSManAction {
    static let create = Namespace.transfer + "/Create"
    static let delete = Namespace.transfer + "/Delete"
    static let command = Namespace.shell + "/Command"
    static let send = Namespace.shell + "/Send"
    static let receive = Namespace.shell + "/Receive"
    static let signal = Namespace.shell + "/Signal"
    /// The action of every fault answer.
    static let fault = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
    /// The anonymous reply-to address.
    static let anonymous = Namespace.addressing + "/role/anonymous"
}
