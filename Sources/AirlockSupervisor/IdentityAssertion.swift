import AirlockPosix
import AirlockProtocol

/// `ASSERT_IDENTITY` (PROTOCOL.md §5.2): a gateway that authenticated its own users (for
/// example `airlock-wsman`, over HTTP Basic) makes a connection act for one of them.
extension Supervisor {
    /// True when the peer's uid or user name is listed in `TrustedGateways`.
    func isTrustedGateway(_ peer: PeerIdentity) -> Bool {
        !peer.isGatewayOnly && peer.assertedBy == nil
            && (config.trustedGateways.contains(peer.userName) || config.trustedGateways.contains(String(peer.uid)))
    }

    func assertIdentity(_ request: AssertIdentity, op: UInt64, from connection: ClientConnection) {
        let gateway = connection.peer
        guard isTrustedGateway(gateway) else {
            logger.notice("identity assertion refused: peer is not a trusted gateway",
                          metadata: ["peer_uid": .stringConvertible(gateway.uid), "asserted_user": .string(request.userName)])
            complete(connection.id, op, code: WSManError.accessDenied,
                     message: "\(gateway.described) may not assert identities: add it to TrustedGateways in airlockd's configuration if it is a gateway you trust")
            return
        }
        guard !connection.identityFixed else {
            complete(connection.id, op, code: WSManError.invalidParameter,
                     message: "ASSERT_IDENTITY must be the connection's first operation (PING, STATUS and LIST_PLUGINS aside) and can be sent once; open a new connection for another user")
            return
        }
        if let problem = Self.assertionProblem(request) {
            complete(connection.id, op, code: WSManError.invalidParameter, message: "ASSERT_IDENTITY: " + problem)
            return
        }
        var peer: PeerIdentity
        if request.flags & AssertIdentity.systemAccount != 0 {
            guard let account = UserDatabase.lookupUser(name: request.userName) else {
                complete(connection.id, op, code: WSManError.accessDenied,
                         message: "ASSERT_IDENTITY: '\(request.userName)' is not an account of this system's user database, but SYSTEM_ACCOUNT was set; clear the flag for a user known only to the gateway")
                return
            }
            peer = PeerIdentity(pid: gateway.pid, uid: account.uid, gid: account.gid, userName: account.name)
        } else {
            peer = PeerIdentity(pid: gateway.pid, uid: PeerIdentity.gatewayOnlyUID, gid: PeerIdentity.gatewayOnlyUID, userName: request.userName)
            peer.principal = gatewayPrincipal(request.userName)
        }
        peer.authenticationMechanism = request.authenticationMechanism
        peer.httpURL = request.httpURL
        peer.assertedBy = gateway.userName
        connection.peer = peer
        connection.identityFixed = true
        logger.info("identity asserted", metadata: [
            "gateway": .string(gateway.userName), "user": .string(peer.userName),
            "system_account": .stringConvertible(!peer.isGatewayOnly), "mechanism": .string(peer.authenticationMechanism),
        ])
        complete(connection.id, op, code: 0, message: "")
    }

    /// The principal of a gateway-only user: the same number for the same name for the
    /// life of the process, so the user's shells survive reconnections.
    private func gatewayPrincipal(_ name: String) -> UInt64 {
        if let known = gatewayPrincipals[name] { return known }
        let principal = (UInt64(1) << 32) + UInt64(gatewayPrincipals.count) + 1
        gatewayPrincipals[name] = principal
        return principal
    }

    /// What is wrong with the assertion's fields, or nil.
    static func assertionProblem(_ request: AssertIdentity) -> String? {
        let name = request.userName.utf8
        guard (1...256).contains(name.count) else { return "userName must be 1 to 256 bytes long, not \(name.count)" }
        if let bad = name.first(where: { $0 < 0x20 || $0 == 0x7F || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "/") }) {
            return "userName contains the byte 0x\(String(bad, radix: 16)); control characters, ':' and '/' are not allowed"
        }
        guard (1...64).contains(request.authenticationMechanism.utf8.count) else {
            return "authenticationMechanism must be 1 to 64 bytes long (for example \"Basic\")"
        }
        guard request.httpURL.utf8.count <= 2048 else { return "httpUrl is longer than 2048 bytes" }
        guard request.flags & ~AssertIdentity.knownFlags == 0 else {
            return "flags 0x\(String(request.flags, radix: 16)) has unknown bits; only bit 0 (SYSTEM_ACCOUNT) is defined"
        }
        return nil
    }
}
