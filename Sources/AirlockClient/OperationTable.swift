/// The operations in flight on one connection, by operation id: a dictionary, with the
/// first operation kept beside it in a slot of its own.
///
/// Most of the time one operation is in flight (a blocking caller's, or one task's), and it
/// lives in the slot: registering, finding and ending it compares one id, where a dictionary
/// hashes the id (SipHash) on each of them. Further operations go to the dictionary; the
/// slot is used again once it is free.
struct OperationTable {
    /// The id of the operation in the slot; 0 (never an operation id) when it is free.
    private var slotID: UInt64 = 0
    private var slot: PendingOperation?
    private var others: [UInt64: PendingOperation] = [:]

    /// True when no operation is in flight.
    var isEmpty: Bool { slotID == 0 && others.isEmpty }

    /// How many operations are in flight.
    var count: Int { (slotID == 0 ? 0 : 1) + others.count }

    /// The operation `id`, or nil when it is not in flight; setting nil removes it.
    subscript(id: UInt64) -> PendingOperation? {
        get {
            if id == slotID { return slot }
            return others.isEmpty ? nil : others[id]
        }
        set {
            guard let newValue else {
                _ = removeValue(forKey: id)
                return
            }
            if id == slotID {
                slot = newValue
            } else if slotID == 0 && (others.isEmpty || others[id] == nil) {
                slotID = id
                slot = newValue
            } else {
                others[id] = newValue
            }
        }
    }

    /// Removes operation `id` and returns it (nil when it was not in flight).
    mutating func removeValue(forKey id: UInt64) -> PendingOperation? {
        if id == slotID && id != 0 {
            slotID = 0
            return slot.take()
        }
        return others.isEmpty ? nil : others.removeValue(forKey: id)
    }

    /// Whether every operation in flight satisfies `predicate` (true when none is).
    func allSatisfy(_ predicate: (PendingOperation) -> Bool) -> Bool {
        if slotID != 0, let slot, !predicate(slot) { return false }
        return others.values.allSatisfy(predicate)
    }

    /// Removes every operation that `matches` and returns them.
    mutating func removeAll(where matches: (PendingOperation) -> Bool) -> [PendingOperation] {
        var removed: [PendingOperation] = []
        if slotID != 0, let operation = slot, matches(operation) {
            removed.append(operation)
            slotID = 0
            slot = nil
        }
        for (id, operation) in others where matches(operation) {
            removed.append(operation)
            others[id] = nil
        }
        return removed
    }
}
