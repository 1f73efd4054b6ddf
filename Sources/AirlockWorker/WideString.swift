import CWSMan

/// UTF-16LE strings, the `PCWSTR` of the plug-in API (`winrm-plugin-api.md` §1).
enum WideString {
    /// The longest string read from the plug-in, in UTF-16 code units: a bound for a
    /// string that lacks its NUL.
    static let maximumLength = 1 << 22

    /// The number of code units before the NUL (at most ``maximumLength``).
    static func length(_ text: UnsafePointer<UInt16>) -> Int {
        var count = 0
        while count < maximumLength && text[count] != 0 { count += 1 }
        return count
    }

    /// A NUL-terminated string from the plug-in as a Swift string; `nil` stays `nil`.
    /// Unpaired surrogates become U+FFFD.
    static func decode(_ text: UnsafePointer<UInt16>?) -> String? {
        guard let text else { return nil }
        return String(decoding: UnsafeBufferPointer(start: text, count: length(text)), as: UTF16.self)
    }

    /// `count` code units from the plug-in, cut at the first NUL (a wire string holds
    /// none; some plug-ins count the terminator in `bufferLength`).
    static func decode(_ text: UnsafePointer<UInt16>, count: Int) -> String {
        var end = 0
        while end < count && text[end] != 0 { end += 1 }
        return String(decoding: UnsafeBufferPointer(start: text, count: end), as: UTF16.self)
    }

    /// A permanent NUL-terminated copy of `text` (for strings that must outlive every
    /// request: Startup's arguments and configuration answers). Never freed.
    static func permanent(_ text: String) -> UnsafePointer<UInt16> {
        let units = Array(text.utf16)
        let storage = UnsafeMutablePointer<UInt16>.allocate(capacity: units.count + 1)
        storage.initialize(from: units, count: units.count)
        storage[units.count] = 0
        return UnsafePointer(storage)
    }

    /// `text` cut to at most `maximumBytes` of UTF-8 at a scalar boundary.
    static func truncated(_ text: String, maximumBytes: Int) -> String {
        let utf8 = text.utf8
        if utf8.count <= maximumBytes { return text }
        var end = utf8.index(utf8.startIndex, offsetBy: maximumBytes)
        while end > utf8.startIndex && utf8[end] & 0xC0 == 0x80 {
            end = utf8.index(before: end)
        }
        return String(decoding: utf8[..<end], as: UTF8.self)
    }
}
