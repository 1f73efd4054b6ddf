import AirlockClient
import Synchronization

/// The output of one command between the plug-in and the WS-Man client's Receives.
///
/// A pump task (``startPump(command:)``) drains the command's output from airlockd into
/// this buffer; a Receive takes what is there, or waits (suspended, never blocking a
/// thread) until there is output, the command is done, the pump fails, or the Receive's
/// OperationTimeout runs out. Above ``highWaterMark`` buffered bytes the pump stops
/// draining until a Receive makes room.
final class CommandOutputBuffer: Sendable {
    /// One contiguous piece of one stream.
    struct Piece: Sendable {
        var stream: String
        var bytes: [UInt8]
    }

    /// What a Receive gets.
    enum Delivery: Sendable {
        /// Output (possibly none), and the exit code when this answer reports Done.
        case output([Piece], exitCode: UInt32?)
        /// Nothing to report before the deadline.
        case timedOut
        /// The command's output failed (plug-in error or crash, lost connection).
        case failed(AirlockError)
    }

    /// How many buffered bytes stop the pump.
    static let highWaterMark = 1 << 20

    private struct Waiter {
        var maximumBytes: Int
        var streams: Set<String>?
        var continuation: CheckedContinuation<Delivery, Never>
        var timer: Task<Void, Never>?
    }

    private struct State {
        var pieces: [Piece] = []
        var bufferedBytes = 0
        var exitCode: UInt32?
        var isDone = false
        var doneReported = false
        var failure: AirlockError?
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiterID: UInt64 = 0
        var pumpWaitingForRoom: CheckedContinuation<Void, Never>?
        var pump: Task<Void, Never>?
        var isClosed = false
    }

    private let state = Mutex(State())

    init() {}

    /// Whether the command has reported Done (its output may still be buffered).
    var isDone: Bool { state.withLock { $0.isDone } }

    /// Starts draining `command`'s output until it is done, fails, or ``close()``.
    func startPump(command: Command) {
        let task = Task { [self] in
            do {
                for try await chunk in command.outputUntilDone() {
                    let mustWait = append(chunk)
                    if mustWait { await waitForRoom() }
                    if Task.isCancelled { return }
                }
                finish(failure: nil)
            } catch let error as AirlockError {
                finish(failure: error)
            } catch {
                finish(failure: AirlockError(code: WSManError.operationAborted, message: "receiving output failed: \(error)"))
            }
        }
        state.withLock { $0.pump = task }
    }

    /// Stops the pump and fails every waiting Receive; the buffer is no longer used.
    func close() {
        let (pump, waiters, room) = state.withLock { state in
            state.isClosed = true
            if state.failure == nil && !state.isDone {
                state.failure = AirlockError(code: WSManError.commandTerminated, message: "the command was terminated")
            }
            let waiters = state.waiters
            state.waiters = [:]
            let room = state.pumpWaitingForRoom
            state.pumpWaitingForRoom = nil
            return (state.pump, waiters, room)
        }
        pump?.cancel()
        room?.resume()
        for waiter in waiters.values {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: .failed(AirlockError(code: WSManError.commandTerminated, message: "the command was terminated")))
        }
    }

    /// Waits up to `timeout` for output or Done, then takes at most `maximumBytes` of
    /// output of `streams` (nil: all streams).
    func receive(maximumBytes: Int, streams: Set<String>?, timeout: Duration) async -> Delivery {
        let waiterID = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        // A Receive whose HTTP client went away is cancelled: its waiter leaves without
        // taking output, so the next Receive gets it.
        let delivery = await withTaskCancellationHandler {
            await wait(waiterID: waiterID, maximumBytes: maximumBytes, streams: streams, timeout: timeout)
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: waiterID) }
            waiter?.timer?.cancel()
            waiter?.continuation.resume(returning: .timedOut)
        }
        resumePumpIfRoom()
        return delivery
    }

    private func wait(waiterID: UInt64, maximumBytes: Int, streams: Set<String>?, timeout: Duration) async -> Delivery {
        await withCheckedContinuation { (continuation: CheckedContinuation<Delivery, Never>) in
            let immediate: Delivery? = state.withLock { state in
                if let delivery = Self.take(&state, maximumBytes: maximumBytes, streams: streams) { return delivery }
                state.waiters[waiterID] = Waiter(maximumBytes: maximumBytes, streams: streams, continuation: continuation)
                return nil
            }
            if let immediate {
                continuation.resume(returning: immediate)
                return
            }
            let timer = Task { [self] in
                try? await Task.sleep(for: timeout)
                let waiter = state.withLock { $0.waiters.removeValue(forKey: waiterID) }
                waiter?.continuation.resume(returning: .timedOut)
            }
            let delivered = state.withLock { state -> Bool in
                guard state.waiters[waiterID] != nil else { return true }
                state.waiters[waiterID]!.timer = timer
                return false
            }
            if delivered { timer.cancel() }
        }
    }

    // MARK: - Pump side

    /// Adds a chunk; returns whether the pump must wait for room.
    private func append(_ chunk: OutputChunk) -> Bool {
        var ready: [(CheckedContinuation<Delivery, Never>, Delivery)] = []
        let mustWait = state.withLock { state -> Bool in
            guard !state.isClosed else { return false }
            let bytes = chunk.bytes
            if let stream = chunk.stream, !bytes.isEmpty {
                if let last = state.pieces.last, last.stream == stream {
                    state.pieces[state.pieces.count - 1].bytes += bytes
                } else {
                    state.pieces.append(Piece(stream: stream, bytes: bytes))
                }
                state.bufferedBytes += bytes.count
            }
            if chunk.commandState == .done {
                state.isDone = true
                state.exitCode = chunk.exitCode ?? 0
            }
            ready = Self.satisfyWaiters(&state)
            return state.bufferedBytes >= Self.highWaterMark
        }
        for (continuation, delivery) in ready { continuation.resume(returning: delivery) }
        return mustWait
    }

    private func finish(failure: AirlockError?) {
        let ready = state.withLock { state -> [(CheckedContinuation<Delivery, Never>, Delivery)] in
            if !state.isDone && state.failure == nil {
                state.failure = failure ?? AirlockError(
                    code: WSManError.invalidProviderResponse, message: "the plug-in completed the Receive without reporting the command done")
            }
            return Self.satisfyWaiters(&state)
        }
        for (continuation, delivery) in ready { continuation.resume(returning: delivery) }
    }

    private func waitForRoom() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let proceed = state.withLock { state -> Bool in
                if state.isClosed || state.bufferedBytes < Self.highWaterMark { return true }
                state.pumpWaitingForRoom = continuation
                return false
            }
            if proceed { continuation.resume() }
        }
    }

    private func resumePumpIfRoom() {
        let room = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.bufferedBytes < Self.highWaterMark else { return nil }
            defer { state.pumpWaitingForRoom = nil }
            return state.pumpWaitingForRoom
        }
        room?.resume()
    }

    // MARK: - Under the lock

    private static func satisfyWaiters(_ state: inout State) -> [(CheckedContinuation<Delivery, Never>, Delivery)] {
        var ready: [(CheckedContinuation<Delivery, Never>, Delivery)] = []
        for id in state.waiters.keys.sorted() {
            guard let waiter = state.waiters[id] else { continue }
            guard let delivery = take(&state, maximumBytes: waiter.maximumBytes, streams: waiter.streams) else { break }
            state.waiters[id] = nil
            waiter.timer?.cancel()
            ready.append((waiter.continuation, delivery))
        }
        return ready
    }

    /// Takes what a Receive may report now, or nil when it must wait.
    private static func take(_ state: inout State, maximumBytes: Int, streams: Set<String>?) -> Delivery? {
        // Output nobody asked for is dropped so it cannot hold up what was asked for.
        if let streams {
            state.pieces.removeAll { piece in
                if streams.contains(piece.stream) { return false }
                state.bufferedBytes -= piece.bytes.count
                return true
            }
        }
        if !state.pieces.isEmpty {
            var taken: [Piece] = []
            var budget = max(1, maximumBytes)
            while budget > 0, !state.pieces.isEmpty {
                let piece = state.pieces[0]
                if piece.bytes.count <= budget {
                    taken.append(piece)
                    state.pieces.removeFirst()
                    budget -= piece.bytes.count
                    state.bufferedBytes -= piece.bytes.count
                } else {
                    taken.append(Piece(stream: piece.stream, bytes: Array(piece.bytes[..<budget])))
                    state.pieces[0].bytes.removeFirst(budget)
                    state.bufferedBytes -= budget
                    budget = 0
                }
            }
            let done = state.pieces.isEmpty && state.isDone
            if done { state.doneReported = true }
            return .output(taken, exitCode: done ? state.exitCode : nil)
        }
        if state.isDone {
            state.doneReported = true
            return .output([], exitCode: state.exitCode)
        }
        if let failure = state.failure { return .failed(failure) }
        return nil
    }
}
