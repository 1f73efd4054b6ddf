import AirlockPosix
import SystemPackage

/// A single-threaded epoll reactor: file-descriptor handlers, one-shot timers and a
/// periodic tick. Everything the supervisor owns is touched only from the thread that
/// calls ``run(until:)``, so it needs no locks.
final class EventLoop {
    typealias Handler = (Epoll.Events) -> Void

    private let epoll: Epoll

    /// One registration: its handler, and the generation that makes its token unique.
    private struct Slot {
        var generation: UInt32 = 0
        var handler: Handler?
    }
    /// Registrations by slot index. A token is the slot index in its low 32 bits and the
    /// slot's generation in the high 32, so an event is dispatched by indexing (no hashing),
    /// and a stale token, whose slot was reused, finds a different generation.
    private var slots: [Slot] = []
    /// Slots free for reuse.
    private var freeSlots: [Int] = []

    private struct Timer {
        var deadline: UInt64
        var id: UInt64
    }
    private var timerHeap: [Timer] = []
    private var timerActions: [UInt64: () -> Void] = [:]
    private var nextTimerID: UInt64 = 1

    /// Runs after every batch of events, before the loop sleeps again (used to flush
    /// output gathered while handling the batch: one write per connection per batch).
    var afterBatch: () -> Void = {}
    /// Runs every ``tickInterval`` nanoseconds.
    var onTick: (UInt64) -> Void = { _ in }
    var tickInterval: UInt64 = 100_000_000
    private var nextTick: UInt64 = 0
    /// The monotonic clock when the current batch of events was returned (one clock read
    /// per batch instead of one per use; handlers are short, so it is microseconds stale
    /// at most). Use it for timestamps and deadlines on the hot path.
    private(set) var now: UInt64 = SystemClock.monotonicNanoseconds()

    init() throws(SystemCallError) {
        epoll = try Epoll(maximumEvents: 256)
    }

    /// Starts watching `fd`; returns the token to modify or remove it with.
    @discardableResult
    func register(_ fd: FileDescriptor, events: Epoll.Events, handler: @escaping Handler) throws(SystemCallError) -> UInt64 {
        let index: Int
        if let free = freeSlots.popLast() {
            index = free
        } else {
            index = slots.count
            slots.append(Slot())
        }
        slots[index].generation &+= 1
        let token = UInt64(slots[index].generation) << 32 | UInt64(index)
        do {
            try epoll.add(fd, events: events, userData: token)
        } catch {
            freeSlots.append(index)
            throw error
        }
        slots[index].handler = handler
        return token
    }

    /// The handler registered under `token`, unless it was unregistered since.
    private func handler(_ token: UInt64) -> Handler? {
        let index = Int(token & 0xFFFF_FFFF)
        guard index < slots.count, slots[index].generation == UInt32(token >> 32) else { return nil }
        return slots[index].handler
    }

    func modify(_ fd: FileDescriptor, token: UInt64, events: Epoll.Events) {
        try? epoll.modify(fd, events: events, userData: token)
    }

    /// Stops watching `fd` (call before closing it).
    func unregister(_ fd: FileDescriptor, token: UInt64) {
        try? epoll.remove(fd)
        let index = Int(token & 0xFFFF_FFFF)
        guard index < slots.count, slots[index].generation == UInt32(token >> 32), slots[index].handler != nil else { return }
        slots[index].handler = nil
        freeSlots.append(index)
    }

    /// Runs `action` once, `delayNanoseconds` from now.
    @discardableResult
    func schedule(afterNanoseconds delay: UInt64, _ action: @escaping () -> Void) -> UInt64 {
        let id = nextTimerID
        nextTimerID += 1
        timerActions[id] = action
        push(Timer(deadline: SystemClock.monotonicNanoseconds() &+ delay, id: id))
        return id
    }

    func cancelTimer(_ id: UInt64) {
        timerActions[id] = nil
    }

    /// Runs until `shouldStop` returns true (checked after every batch).
    func run(until shouldStop: () -> Bool) {
        var clock = SystemClock.monotonicNanoseconds()
        nextTick = clock &+ tickInterval
        while !shouldStop() {
            // `clock` was read after the previous batch; flushing its output took microseconds.
            var wake = nextTick
            if let first = timerHeap.first, first.deadline < wake { wake = first.deadline }
            let timeout = wake <= clock ? 0 : Int32(min((wake - clock + 999_999) / 1_000_000, 1000))
            let ready: Epoll.ReadyEvents
            do {
                ready = try epoll.wait(timeoutMilliseconds: timeout)
            } catch {
                clock = SystemClock.monotonicNanoseconds()
                continue
            }
            now = SystemClock.monotonicNanoseconds()
            for event in ready {
                handler(event.userData)?(event.events)
            }
            // Read again, not `now`: handlers stamp times with the clock too, and a deadline
            // check must never see a time older than one stamped in the batch.
            clock = SystemClock.monotonicNanoseconds()
            runDueTimers(now: clock)
            if clock >= nextTick {
                nextTick = clock &+ tickInterval
                onTick(clock)
            }
            afterBatch()
        }
    }

    private func runDueTimers(now: UInt64) {
        while let first = timerHeap.first, first.deadline <= now {
            pop()
            if let action = timerActions.removeValue(forKey: first.id) { action() }
        }
    }

    private func push(_ timer: Timer) {
        timerHeap.append(timer)
        var i = timerHeap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if timerHeap[parent].deadline <= timerHeap[i].deadline { break }
            timerHeap.swapAt(parent, i)
            i = parent
        }
    }

    private func pop() {
        timerHeap.swapAt(0, timerHeap.count - 1)
        timerHeap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < timerHeap.count && timerHeap[l].deadline < timerHeap[smallest].deadline { smallest = l }
            if r < timerHeap.count && timerHeap[r].deadline < timerHeap[smallest].deadline { smallest = r }
            if smallest == i { break }
            timerHeap.swapAt(i, smallest)
            i = smallest
        }
    }
}
