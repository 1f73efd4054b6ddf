import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// One element of a parsed document: its namespace and local name, its attributes (by
/// local name, namespace prefixes dropped) and its children or text.
struct XMLNode: Sendable {
    var namespace: String
    var name: String
    var attributes: [String: String]
    var children: [XMLNode]
    var text: String

    /// The first child with this namespace and local name.
    func child(_ namespace: String, _ name: String) -> XMLNode? {
        children.first { $0.name == name && $0.namespace == namespace }
    }

    /// Every child with this namespace and local name, in document order.
    func children(_ namespace: String, _ name: String) -> [XMLNode] {
        children.filter { $0.name == name && $0.namespace == namespace }
    }

    /// The text of the child, trimmed, or nil when there is no such child.
    func childText(_ namespace: String, _ name: String) -> String? {
        child(namespace, name).map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// The value of an attribute, looked up by local name.
    func attribute(_ name: String) -> String? { attributes[name] }
}

/// Why a request body is not a SOAP 1.2 envelope this gateway can read.
struct MalformedEnvelope: Error, Sendable {
    var reason: String
}

/// A SOAP 1.2 envelope: its header and body elements.
struct SOAPEnvelope: Sendable {
    var header: XMLNode
    var body: XMLNode

    /// Parses `data`, namespace-aware.
    ///
    /// - Throws: ``MalformedEnvelope`` when it is not XML, or not a SOAP 1.2 envelope with a body.
    static func parse(_ data: Data) throws(MalformedEnvelope) -> SOAPEnvelope {
        let builder = TreeBuilder()
        let parser = XMLParser(data: data)
        parser.shouldProcessNamespaces = true
        parser.shouldReportNamespacePrefixes = false
        parser.shouldResolveExternalEntities = false
        parser.delegate = builder
        guard parser.parse(), let root = builder.root else {
            let reason = parser.parserError.map { "\($0.localizedDescription)" } ?? "no document element"
            throw MalformedEnvelope(reason: "the body is not well-formed XML (\(reason), line \(parser.lineNumber))")
        }
        guard root.namespace == Namespace.soap, root.name == "Envelope" else {
            throw MalformedEnvelope(reason: "the document element is {\(root.namespace)}\(root.name), not a SOAP 1.2 Envelope")
        }
        guard let body = root.child(Namespace.soap, "Body") else {
            throw MalformedEnvelope(reason: "the SOAP envelope has no Body")
        }
        let header = root.child(Namespace.soap, "Header")
            ?? XMLNode(namespace: Namespace.soap, name: "Header", attributes: [:], children: [], text: "")
        return SOAPEnvelope(header: header, body: body)
    }
}

/// Builds the element tree from `XMLParser`'s events.
private final class TreeBuilder: NSObject, XMLParserDelegate {
    var stack: [XMLNode] = []
    var root: XMLNode?
    /// Guards against absurdly deep documents.
    static let maximumDepth = 64

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
        qualifiedName: String?, attributes attributeDict: [String: String] = [:]
    ) {
        if stack.count >= Self.maximumDepth {
            parser.abortParsing()
            return
        }
        var attributes: [String: String] = [:]
        for (key, value) in attributeDict where !key.hasPrefix("xmlns") {
            let local = key.split(separator: ":", maxSplits: 1).last.map(String.init) ?? key
            attributes[local] = value
        }
        stack.append(XMLNode(namespace: namespaceURI ?? "", name: localName(elementName), attributes: attributes, children: [], text: ""))
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        guard let node = stack.popLast() else { return }
        if stack.isEmpty {
            root = node
        } else {
            stack[stack.count - 1].children.append(node)
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += string
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += String(decoding: CDATABlock, as: UTF8.self)
    }

    private func localName(_ name: String) -> String {
        guard let colon = name.lastIndex(of: ":") else { return name }
        return String(name[name.index(after: colon)...])
    }
}
