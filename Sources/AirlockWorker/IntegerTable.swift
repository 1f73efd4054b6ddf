/// A hash table from 64-bit integer keys (operation ids, shell and command ids, request
/// addresses) to objects, for the lookups every request makes: open addressing with
/// linear probing and a multiplicative (Fibonacci) hash instead of `Dictionary`'s
/// seeded SipHash, which was a tenth of the worker's user time per request.
///
/// Not for keys an attacker picks to collide: every key here is assigned by the
/// supervisor or is an address this process allocated.
struct IntegerTable<Value: AnyObject> {
    private var keys: [UInt64]
    private var slots: [Value?]
    /// 64 minus log2 of the capacity: the hash keeps the product's top bits.
    private var shift: UInt64
    /// Entries in the table.
    private(set) var count = 0

    /// An empty table; it allocates on the first insertion.
    init() {
        keys = []
        slots = []
        shift = 64
    }

    var isEmpty: Bool { count == 0 }

    /// Every value, in no particular order.
    var values: [Value] { slots.compactMap { $0 } }

    @inline(__always)
    private var mask: Int { slots.count - 1 }

    @inline(__always)
    private func home(of key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// The slot holding `key`, or the empty slot where it would go.
    @inline(__always)
    private func find(_ key: UInt64) -> (index: Int, found: Bool) {
        if slots.isEmpty { return (0, false) }
        var index = home(of: key)
        while slots[index] != nil {
            if keys[index] == key { return (index, true) }
            index = (index + 1) & mask
        }
        return (index, false)
    }

    /// Whether `key` has a value (without retaining it).
    func contains(_ key: UInt64) -> Bool {
        find(key).found
    }

    /// The value of `key`; assigning `nil` removes it.
    subscript(key: UInt64) -> Value? {
        get {
            let (index, found) = find(key)
            return found ? slots[index] : nil
        }
        set {
            if let newValue {
                insert(newValue, for: key)
            } else {
                remove(key)
            }
        }
    }

    private mutating func insert(_ value: Value, for key: UInt64) {
        var (index, found) = find(key)
        if !found {
            if (count + 1) * 2 > slots.count {
                grow()
                index = find(key).index
            }
            count += 1
            keys[index] = key
        }
        slots[index] = value
    }

    /// Removes `key` and shifts back the entries that probed past it, so every entry
    /// stays reachable from its home slot without tombstones.
    private mutating func remove(_ key: UInt64) {
        var (hole, found) = find(key)
        guard found else { return }
        count -= 1
        var index = hole
        while true {
            index = (index + 1) & mask
            guard slots[index] != nil else { break }
            let home = home(of: keys[index])
            // The entry may move to the hole unless its home lies cyclically in (hole, index].
            let distanceToHole = (hole - home) & mask
            let distanceToIndex = (index - home) & mask
            if distanceToHole < distanceToIndex {
                keys[hole] = keys[index]
                slots[hole] = slots[index]
                hole = index
            }
        }
        slots[hole] = nil
    }

    private mutating func grow() {
        let oldKeys = keys
        let oldSlots = slots
        let capacity = max(oldSlots.count * 2, 16)
        keys = Array(repeating: 0, count: capacity)
        slots = Array(repeating: nil, count: capacity)
        shift = UInt64(64 - capacity.trailingZeroBitCount)
        for (key, value) in zip(oldKeys, oldSlots) {
            guard let value else { continue }
            let index = find(key).index
            keys[index] = key
            slots[index] = value
        }
    }

    /// Removes every entry (keeping the capacity).
    mutating func removeAll() {
        for index in slots.indices { slots[index] = nil }
        count = 0
    }
}
