import Glibc

/// The user and group databases (`getpwnam_r` and friends; thread-safe).
public enum UserDatabase {
    /// A user's identity from the password database.
    public struct User: Sendable, Hashable {
        public var name: String
        public var uid: uid_t
        public var gid: gid_t
        public var home: String
    }

    /// `getpwuid_r`: the name of `uid`, or `nil` when it has no entry.
    public static func userName(uid: uid_t) -> String? {
        withPasswordEntry({ getpwuid_r(uid, $0, $1, $2, $3) }) { String(cString: $0.pw_name) }
    }

    /// `getpwnam_r`: the user called `name`, or `nil` when there is none.
    public static func lookupUser(name: String) -> User? {
        withPasswordEntry({ getpwnam_r(name, $0, $1, $2, $3) }) {
            User(name: String(cString: $0.pw_name), uid: $0.pw_uid, gid: $0.pw_gid, home: String(cString: $0.pw_dir))
        }
    }

    /// `getpwuid_r`: the user with `uid`, or `nil`.
    public static func lookupUser(uid: uid_t) -> User? {
        withPasswordEntry({ getpwuid_r(uid, $0, $1, $2, $3) }) {
            User(name: String(cString: $0.pw_name), uid: $0.pw_uid, gid: $0.pw_gid, home: String(cString: $0.pw_dir))
        }
    }

    /// `getgrnam_r`: the gid of group `name`, or `nil`.
    public static func lookupGroup(name: String) -> gid_t? {
        withGroupEntry({ getgrnam_r(name, $0, $1, $2, $3) }) { $0.gr_gid }
    }

    /// `getgrgid_r`: the name of group `gid`, or `nil`.
    public static func groupName(gid: gid_t) -> String? {
        withGroupEntry({ getgrgid_r(gid, $0, $1, $2, $3) }) { String(cString: $0.gr_name) }
    }

    /// `getgrouplist`: every group `user` belongs to, including `gid` (its primary group).
    public static func groupList(user: String, gid: gid_t) -> [gid_t] {
        var count: Int32 = 32
        while true {
            var groups = [gid_t](repeating: 0, count: Int(count))
            let previous = count
            if getgrouplist(user, gid, &groups, &count) != -1 {
                return Array(groups.prefix(Int(count)))
            }
            if count <= previous { count = previous * 2 }
        }
    }

    private static func withPasswordEntry<Result>(
        _ lookup: (UnsafeMutablePointer<passwd>, UnsafeMutablePointer<CChar>, Int, UnsafeMutablePointer<UnsafeMutablePointer<passwd>?>) -> Int32,
        _ extract: (passwd) -> Result
    ) -> Result? {
        var size = 1024
        while true {
            var entry = passwd()
            var found: UnsafeMutablePointer<passwd>? = nil
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            defer { buffer.deallocate() }
            let error = lookup(&entry, buffer, size, &found)
            if error == ERANGE && size < 1 << 20 { size *= 4; continue }
            if error == EINTR { continue }
            guard error == 0, found != nil else { return nil }
            return extract(entry)
        }
    }

    private static func withGroupEntry<Result>(
        _ lookup: (UnsafeMutablePointer<group>, UnsafeMutablePointer<CChar>, Int, UnsafeMutablePointer<UnsafeMutablePointer<group>?>) -> Int32,
        _ extract: (group) -> Result
    ) -> Result? {
        var size = 1024
        while true {
            var entry = group()
            var found: UnsafeMutablePointer<group>? = nil
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            defer { buffer.deallocate() }
            let error = lookup(&entry, buffer, size, &found)
            if error == ERANGE && size < 1 << 20 { size *= 4; continue }
            if error == EINTR { continue }
            guard error == 0, found != nil else { return nil }
            return extract(entry)
        }
    }
}
