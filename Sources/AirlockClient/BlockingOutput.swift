import Synchronization

/// The output of one `RECEIVE`, read by the calling thread: what
/// ``Command/outputBlocking(streams:timeout:)`` returns.
///
/// Call ``next()`` until it returns nil (the plug-in completed the Receive) or throws (it
/// completed it with an error, or the connection failed). When no other thread reads the
/// connection, `next()` receives from the socket itself, so each result goes from the socket
/// to the caller without passing through another thread: no wake-up of a waiting task per
/// result, as ``Command/output(streams:timeout:)`` has. This is the faster way to take a
/// large stream of output; use it from a thread of your own, never from async code.
///
/// One thread uses a `BlockingOutput` at a time. Other operations on the same connection may
/// run meanwhile, from other threads or tasks; while the caller is between two `next()`
/// calls, the connection's reader thread reads for them. Releasing the object before the
/// end cancels the Receive (`CANCEL`).
public final class BlockingOutput {
    private let core: ConnectionCore
    private let operationID: UInt64
    private let sink: BlockingStreamSink
    /// Set once `next()` returned nil or threw: the Receive is over.
    private var ended = false

    init(core: ConnectionCore, operationID: UInt64, sink: BlockingStreamSink) {
        self.core = core
        self.operationID = operationID
        self.sink = sink
    }

    deinit {
        if !ended { core.abandonBlockingStream(operationID, sink) }
    }

    /// The next result, or nil once the plug-in has completed the Receive. Throws
    /// ``AirlockError`` when the Receive completed with an error or the connection failed;
    /// after that (or nil) it keeps returning nil. Blocks the calling thread until a result
    /// arrives: never call it from async code.
    public func next() throws(AirlockError) -> OutputChunk? {
        if ended { return nil }
        var connectionEnded = false
        while true {
            switch sink.take(waitingIfEmpty: true) {
            case .chunk(let chunk):
                return chunk
            case .finished(let failure):
                ended = true
                if let failure { throw failure }
                return nil
            case .empty:
                // Once reading ended, the reader thread fails every operation: wait for it.
                if connectionEnded || !core.readForBlockingStream(sink, connectionEnded: &connectionEnded) {
                    sink.waitForResult()
                }
            }
        }
    }

    /// Asks the server to cancel the Receive (`CANCEL`). The results that arrived before
    /// are still returned by ``next()``, and then the Receive's end (normally an error with
    /// `ERROR_OPERATION_ABORTED`).
    public func cancel() {
        if !ended { core.cancel(operationID) }
    }
}

/// The results of one ``BlockingOutput`` between the thread that routes them (its own
/// caller, or the connection's reader thread) and the thread that consumes them.
final class BlockingStreamSink: Sendable {
    /// What ``take(waitingIfEmpty:)`` found.
    enum Taken {
        /// The oldest result not yet taken.
        case chunk(OutputChunk)
        /// Every result was taken and the Receive ended: successfully (nil) or not.
        case finished(AirlockError?)
        /// Nothing yet.
        case empty
    }

    private struct Queue {
        /// Results not yet taken, from `head` on (taken ones are nil, so that the consumer
        /// holds the only reference to a result's data and can change it without a copy).
        var chunks: [OutputChunk?] = []
        var head = 0
        var finished = false
        var failure: AirlockError?
        /// Set while the consumer waits (or is about to) on `semaphore`.
        var waiting = false

        /// Whether the consumer must be woken; it is no longer waiting once it is.
        mutating func takeWaiting() -> Bool {
            defer { waiting = false }
            return waiting
        }
    }

    private let queue = Mutex(Queue())
    private let semaphore = Semaphore()
    /// Set when the ``BlockingOutput`` was released before the end: nobody reads for it
    /// any more, so the reader thread must.
    let abandoned = Atomic<Bool>(false)

    /// Adds a result (by whichever thread routed it) and wakes a waiting consumer.
    func deliver(_ chunk: OutputChunk) {
        let wake = queue.withLock { queue in
            queue.chunks.append(chunk)
            return queue.takeWaiting()
        }
        if wake { semaphore.signal() }
    }

    /// Ends the Receive, after the results delivered so far.
    func finish(_ failure: AirlockError?) {
        let wake = queue.withLock { queue in
            if !queue.finished {
                queue.finished = true
                queue.failure = failure
            }
            return queue.takeWaiting()
        }
        if wake { semaphore.signal() }
    }

    /// Wakes the consumer if it waits, without a result: the socket is free for it to read.
    func nudge() {
        if queue.withLock({ $0.takeWaiting() }) { semaphore.signal() }
    }

    /// The oldest result not yet taken, the end, or `.empty`; `waitingIfEmpty` then marks the
    /// consumer as waiting, so that whatever comes next wakes it (see ``waitForResult()``).
    func take(waitingIfEmpty: Bool) -> Taken {
        queue.withLock { queue in
            if queue.head < queue.chunks.count {
                let chunk = queue.chunks[queue.head].take()!
                queue.head += 1
                if queue.head == queue.chunks.count {
                    queue.chunks.removeAll(keepingCapacity: true)
                    queue.head = 0
                }
                return .chunk(chunk)
            }
            if queue.finished { return .finished(queue.failure) }
            if waitingIfEmpty { queue.waiting = true }
            return .empty
        }
    }

    /// The consumer reads the socket itself after all: nothing needs to wake it. (A wake-up
    /// already sent leaves the semaphore counted; ``waitForResult()`` then returns at once
    /// and the consumer looks again, which is harmless.)
    func stopWaiting() {
        queue.withLock { $0.waiting = false }
    }

    /// Waits until a result or the end is delivered, or the consumer is nudged, after
    /// ``take(waitingIfEmpty:)`` found nothing. May return early; the caller looks again.
    func waitForResult() {
        semaphore.wait()
    }
}
