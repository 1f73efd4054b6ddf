import AirlockGatewayAuth
import Foundation
import Testing

@Suite("Basic Authorization header")
struct BasicAuthorizationTests {
    @Test("user:password in canonical base64, any case of the scheme, surrounding blanks")
    func good() {
        for header in ["Basic YWxpY2U6c2VjcmV0", "basic YWxpY2U6c2VjcmV0", "BASIC  YWxpY2U6c2VjcmV0", " Basic\tYWxpY2U6c2VjcmV0 "] {
            let parsed = BasicAuthorization.parse(header)
            #expect(parsed?.user == "alice", "\(header)")
            #expect(parsed?.password == "secret", "\(header)")
        }
    }

    @Test("every padding length round-trips")
    func paddingLengths() {
        for password in ["p", "pw", "pwd", "pwd1", "pwd12", "pwd123"] {
            let parsed = BasicAuthorization.parse(basicHeader("bob", password))
            #expect(parsed?.user == "bob")
            #expect(parsed?.password == password)
        }
    }

    @Test("the password may contain colons: the user ends at the first one")
    func passwordWithColons() {
        let parsed = BasicAuthorization.parse(basicHeader("carol", "a:b::c:"))
        #expect(parsed?.user == "carol")
        #expect(parsed?.password == "a:b::c:")
        let empty = BasicAuthorization.parse(basicHeader("dave", ""))
        #expect(empty?.user == "dave")
        #expect(empty?.password == "")
    }

    @Test("non-ASCII user and password, as UTF-8")
    func nonASCII() {
        let parsed = BasicAuthorization.parse(basicHeader("jürgen", "pässwört€"))
        #expect(parsed?.user == "jürgen")
        #expect(parsed?.password == "pässwört€")
        let japanese = BasicAuthorization.parse(basicHeader("ユーザー", "パス"))
        #expect(japanese?.user == "ユーザー")
        #expect(japanese?.password == "パス")
    }

    @Test("malformed values are refused", arguments: [
        "",                                  // nothing
        "Basic",                             // no credential
        "Basic ",                            // empty credential
        "BasicYWxpY2U6c2VjcmV0",             // no blank after the scheme
        "Bearer YWxpY2U6c2VjcmV0",           // another scheme
        "Digest username=\"alice\"",         // another scheme
        "Basic YWxpY2U6c2VjcmV0=",           // length not a multiple of 4
        "Basic YWxpY2U6c2VjcmV",             // unpadded
        "Basic YWxpY2U6c2VjcmV0====",        // too much padding
        "Basic YWxp Y2U6c2VjcmV0",           // blank inside
        "Basic YWxpY2U6c2Vjc!V0",            // character outside the alphabet
        "Basic YWxpY2U6c2VjcmV0\n",          // line feed
        "Basic YW=pY2U6c2VjcmV0",            // padding in the middle
        "Basic YWxpY2U6c2VjcmW=",            // non-zero bits in the padding ("alice:secrf" would be ...cmY=)
        "Basic YR==",                        // non-zero bits in the padding
        "Basic YWxpY2U-c2VjcmV0",            // base64url alphabet
        "Basic YWxpY2VzZWNyZXQ=",            // "alicesecret": no colon
    ])
    func malformed(header: String) {
        #expect(BasicAuthorization.parse(header) == nil)
    }

    @Test("bytes that are not UTF-8, control characters in the user, NUL in the password are refused")
    func badBytes() {
        func header(_ bytes: [UInt8]) -> String { "Basic " + Data(bytes).base64EncodedString() }
        #expect(BasicAuthorization.parse(header(Array("al".utf8) + [0xFF] + Array(":pw".utf8))) == nil)
        #expect(BasicAuthorization.parse(header(Array("al:p".utf8) + [0xC3] + Array("w".utf8))) == nil)
        #expect(BasicAuthorization.parse(header(Array("al\nice:pw".utf8))) == nil)
        #expect(BasicAuthorization.parse(header(Array("al\u{0}ice:pw".utf8))) == nil)
        #expect(BasicAuthorization.parse(header(Array("alice:pw\u{0}more".utf8))) == nil)
    }

    @Test("an over-long credential is refused")
    func overLong() {
        #expect(BasicAuthorization.parse(basicHeader("alice", String(repeating: "x", count: 20_000))) == nil)
    }
}
