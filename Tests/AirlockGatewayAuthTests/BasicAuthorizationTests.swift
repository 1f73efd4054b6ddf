import AirlockGatewayAuth
import Testing

@Suite("Basic Authorization header")
struct BasicAuthorizationTests {
    @Test("user:password in canonical base64")
    func good() {
        // "alice:secret"
        let parsed = BasicAuthorization.parse("Basic YWxpY2U6c2VjcmV0")
        #expect(parsed?.user == "alice")
        #expect(parsed?.password == "secret")
    }
}
