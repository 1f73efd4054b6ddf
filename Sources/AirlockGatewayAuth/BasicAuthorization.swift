/// The HTTP Basic authentication scheme (RFC 7617).
public enum BasicAuthorization {
    /// The longest credential accepted, in base64 characters (8 KiB).
    static let maximumEncodedLength = 8192

    /// Parses an `Authorization: Basic base64(user:password)` header value; nil when malformed.
    ///
    /// The scheme name is case-insensitive; the base64 must be canonical (standard alphabet,
    /// `=` padding, no stray bits); the decoded bytes must be UTF-8; the user name is
    /// everything before the first colon (so passwords may contain colons). A user name with
    /// a control character, or a NUL byte in either part, is malformed (RFC 7617 forbids them
    /// and C would cut the string short).
    public static func parse(_ headerValue: String) -> (user: String, password: String)? {
        var value = Substring(headerValue)
        value = value.drop { $0 == " " || $0 == "\t" }
        while let last = value.last, last == " " || last == "\t" { value = value.dropLast() }
        guard value.utf8.count > 6 else { return nil }
        let scheme = value.prefix(5)
        guard scheme.lowercased() == "basic" else { return nil }
        var rest = value.dropFirst(5)
        guard let separator = rest.first, separator == " " || separator == "\t" else { return nil }
        rest = rest.drop { $0 == " " || $0 == "\t" }
        guard rest.utf8.count <= maximumEncodedLength, let decoded = Base64.decode(rest.utf8) else { return nil }
        guard let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        guard let user = String(validating: decoded[..<colon], as: UTF8.self),
              let password = String(validating: decoded[(colon + 1)...], as: UTF8.self) else { return nil }
        guard !user.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }),
              !password.utf8.contains(0) else { return nil }
        return (user, password)
    }
}

/// A strict base64 decoder (RFC 4648 section 4): standard alphabet, padding required,
/// no whitespace, and the unused bits of the last group must be zero.
enum Base64 {
    private static let invalid: UInt8 = 0xFF

    private static let table: [UInt8] = {
        var table = [UInt8](repeating: invalid, count: 256)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for (value, character) in alphabet.enumerated() { table[Int(character)] = UInt8(value) }
        return table
    }()

    /// The bytes `encoded` stands for, or nil when it is not canonical base64.
    static func decode<Encoded: Collection<UInt8>>(_ encoded: Encoded) -> [UInt8]? {
        let input = Array(encoded)
        guard input.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let isLastGroup = index + 4 == input.count
            let a = table[Int(input[index])], b = table[Int(input[index + 1])]
            guard a != invalid, b != invalid else { return nil }
            let third = input[index + 2], fourth = input[index + 3]
            if isLastGroup && third == UInt8(ascii: "=") {
                // One byte: "xx==", the low 4 bits of b unused.
                guard fourth == UInt8(ascii: "="), b & 0x0F == 0 else { return nil }
                output.append(a << 2 | b >> 4)
            } else if isLastGroup && fourth == UInt8(ascii: "=") {
                // Two bytes: "xxx=", the low 2 bits of c unused.
                let c = table[Int(third)]
                guard c != invalid, c & 0x03 == 0 else { return nil }
                output.append(a << 2 | b >> 4)
                output.append((b & 0x0F) << 4 | c >> 2)
            } else {
                let c = table[Int(third)], d = table[Int(fourth)]
                guard c != invalid, d != invalid else { return nil }
                output.append(a << 2 | b >> 4)
                output.append((b & 0x0F) << 4 | c >> 2)
                output.append((c & 0x03) << 6 | d)
            }
            index += 4
        }
        return output
    }
}
