import Glibc
import Testing

/// One named byte sequence of a `proto/vectors/*.txt` file.
struct Vector: Sendable, CustomTestStringConvertible {
    /// The name between the brackets of the section header.
    var name: String
    /// The `key=value` pairs after the name in the section header.
    var attributes: [String: String]
    /// The bytes the section's hex digits spell.
    var bytes: [UInt8]

    var testDescription: String { name }
}

/// Reads the golden-vector files of `proto/vectors` (format: `proto/vectors/README.md`).
///
/// A section starts with a line `[name key=value ...]`; everything from `#` to the end
/// of a line is a comment; the other characters of a section are hex digit pairs and
/// whitespace.
enum VectorFile {
    /// The `proto/vectors` folder of this checkout, found from this source file's path.
    static let directory: String = {
        var path = #filePath
        for _ in 0..<3 {  // .../Tests/AirlockProtocolTests/VectorFile.swift -> repository root
            path = String(path[..<path.lastIndex(of: "/")!])
        }
        return path + "/proto/vectors"
    }()

    /// The vectors of `proto/vectors/<fileName>`, in file order.
    static func load(_ fileName: String) -> [Vector] {
        let path = directory + "/" + fileName
        guard let text = readText(path) else {
            fatalError("cannot read \(path)")
        }
        do {
            return try parse(text)
        } catch {
            fatalError("\(path): \(error)")
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var line: Int
        var problem: String
        var description: String { "line \(line): \(problem)" }
    }

    static func parse(_ text: String) throws -> [Vector] {
        var vectors: [Vector] = []
        var current: Vector?
        var pendingNibble: UInt8?
        var lineNumber = 0
        func finish() throws {
            if let vector = current {
                if pendingNibble != nil {
                    throw ParseError(line: lineNumber, problem: "odd number of hex digits in [\(vector.name)]")
                }
                vectors.append(vector)
            }
        }
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            if trimmed.first == "[" {
                try finish()
                guard let close = trimmed.firstIndex(of: "]") else {
                    throw ParseError(line: lineNumber, problem: "section header without ]")
                }
                let words = trimmed[trimmed.index(after: trimmed.startIndex)..<close].split(separator: " ")
                guard let name = words.first else { throw ParseError(line: lineNumber, problem: "empty section name") }
                var attributes: [String: String] = [:]
                for word in words.dropFirst() {
                    let pair = word.split(separator: "=", maxSplits: 1)
                    guard pair.count == 2 else { throw ParseError(line: lineNumber, problem: "attribute \(word) is not key=value") }
                    attributes[String(pair[0])] = String(pair[1])
                }
                current = Vector(name: String(name), attributes: attributes, bytes: [])
                pendingNibble = nil
                continue
            }
            for scalar in trimmed.unicodeScalars {
                if scalar == " " || scalar == "\t" || scalar == "\r" { continue }
                guard let nibble = hexValue(scalar) else {
                    throw ParseError(line: lineNumber, problem: "unexpected character \(scalar)")
                }
                guard current != nil else {
                    throw ParseError(line: lineNumber, problem: "hex digits before the first section")
                }
                if let high = pendingNibble {
                    current!.bytes.append(high << 4 | nibble)
                    pendingNibble = nil
                } else {
                    pendingNibble = nibble
                }
            }
        }
        try finish()
        return vectors
    }

    private static func hexValue(_ scalar: Unicode.Scalar) -> UInt8? {
        switch scalar {
        case "0"..."9": UInt8(scalar.value - 48)
        case "a"..."f": UInt8(scalar.value - 97 + 10)
        case "A"..."F": UInt8(scalar.value - 65 + 10)
        default: nil
        }
    }

    /// The whole file as UTF-8 text, or nil when it cannot be read.
    static func readText(_ path: String) -> String? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if count == 0 { break }
            bytes += chunk[0..<count]
        }
        if ferror(file) != 0 { return nil }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// Hex rendering for failure messages.
extension Array where Element == UInt8 {
    var hex: String {
        var text = ""
        text.reserveCapacity(count * 2)
        let digits = [Unicode.Scalar]("0123456789abcdef".unicodeScalars)
        for byte in self {
            text.unicodeScalars.append(digits[Int(byte >> 4)])
            text.unicodeScalars.append(digits[Int(byte & 0xF)])
        }
        return text
    }
}
