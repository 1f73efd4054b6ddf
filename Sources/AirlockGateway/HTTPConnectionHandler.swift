import Foundation
import NIOCore
import NIOHTTP1

/// What the HTTP layer asks of the gateway for one complete `POST /wsman` request.
protocol WSManRequestResponder: Sendable {
    /// Authenticates the `Authorization` header and answers the SOAP body; nil status
    /// means 401.
    func respond(authorization: String?, body: Data, httpURL: String) async -> HTTPAnswer?
}

/// The HTTP/1.1 side of one client connection: collects each request (Content-Length or
/// chunked body), answers `POST /wsman` through a ``WSManRequestResponder`` off the event
/// loop, and writes each answer, head and body, as one buffer with one flush. Requests are
/// answered in order; keep-alive unless the client says otherwise.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = ByteBuffer

    private struct PendingRequest {
        var head: HTTPRequestHead
        var body: ByteBuffer
    }

    private let responder: any WSManRequestResponder
    private let maximumBodySize: Int
    private let scheme: String
    private let listenerAuthority: String

    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var refusing = false
    private var queue: [PendingRequest] = []
    private var busy = false
    private var closing = false
    private var inFlight: Task<Void, Never>?

    init(responder: any WSManRequestResponder, maximumBodySize: Int, scheme: String, listenerAuthority: String) {
        self.responder = responder
        self.maximumBodySize = maximumBodySize
        self.scheme = scheme
        self.listenerAuthority = listenerAuthority
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = context.channel.allocator.buffer(capacity: 0)
            refusing = false
            if let length = requestHead.headers.first(name: "content-length").flatMap(Int.init), length > maximumBodySize {
                refuseTooLarge(context: context)
            }
        case .body(var part):
            guard !refusing, head != nil else { return }
            if (body?.readableBytes ?? 0) + part.readableBytes > maximumBodySize {
                refuseTooLarge(context: context)
                return
            }
            body?.writeBuffer(&part)
        case .end:
            guard !refusing, let requestHead = head, let requestBody = body else { return }
            head = nil
            body = nil
            queue.append(PendingRequest(head: requestHead, body: requestBody))
            processNext(context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError, !closing {
            closing = true
            write(context: context, status: .badRequest, body: [], keepAlive: false)
        } else {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        queue.removeAll()
        inFlight?.cancel()
        inFlight = nil
        context.fireChannelInactive()
    }

    // MARK: - Requests

    private func refuseTooLarge(context: ChannelHandlerContext) {
        refusing = true
        head = nil
        body = nil
        closing = true
        write(context: context, status: .payloadTooLarge, body: [], keepAlive: false)
    }

    private func processNext(context: ChannelHandlerContext) {
        guard !busy, !closing, !queue.isEmpty else { return }
        let request = queue.removeFirst()
        let keepAlive = request.head.isKeepAlive
        let path = request.head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard path == "/wsman" || path == "/wsman/" else {
            write(context: context, status: .notFound, body: [], keepAlive: keepAlive)
            processNext(context: context)
            return
        }
        guard request.head.method == .POST else {
            write(context: context, status: .methodNotAllowed, body: [], keepAlive: keepAlive, extraHeaders: "Allow: POST\r\n")
            processNext(context: context)
            return
        }
        busy = true
        let authorization = request.head.headers.first(name: "authorization")
        let authority = request.head.headers.first(name: "host") ?? listenerAuthority
        let httpURL = "\(scheme)://\(authority)/wsman"
        let body = Data(request.body.readableBytesView)
        let responder = self.responder
        let eventLoop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: eventLoop)
        inFlight = Task {
            let answer = await responder.respond(authorization: authorization, body: body, httpURL: httpURL)
            eventLoop.execute {
                let (handler, context) = bound.value
                handler.busy = false
                handler.inFlight = nil
                guard !handler.closing else { return }
                if let answer {
                    handler.write(context: context, status: HTTPResponseStatus(statusCode: answer.status), body: answer.body, keepAlive: keepAlive)
                } else {
                    handler.write(
                        context: context, status: .unauthorized, body: [], keepAlive: keepAlive,
                        extraHeaders: "WWW-Authenticate: Basic realm=\"airlock-wsman\"\r\n")
                }
                handler.processNext(context: context)
            }
        }
    }

    /// Writes the status line, headers and body as one buffer and flushes once.
    private func write(
        context: ChannelHandlerContext, status: HTTPResponseStatus, body: [UInt8], keepAlive: Bool, extraHeaders: String = ""
    ) {
        var head = "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nServer: airlock-wsman\r\n"
        if !body.isEmpty { head += "Content-Type: application/soap+xml;charset=UTF-8\r\n" }
        head += "Content-Length: \(body.count)\r\n"
        head += extraHeaders
        if !keepAlive { head += "Connection: close\r\n" }
        head += "\r\n"
        var buffer = context.channel.allocator.buffer(capacity: head.utf8.count + body.count)
        buffer.writeString(head)
        buffer.writeBytes(body)
        let written = context.writeAndFlush(wrapOutboundOut(buffer))
        if !keepAlive {
            closing = true
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
