import AirlockClient
import Foundation

/// Runs `body` on a thread of its own (the blocking client API must never run on a Swift
/// concurrency pool thread) and returns the error it threw, or nil.
func onPlainThread(_ body: @escaping @Sendable () throws(AirlockError) -> Void) async -> AirlockError? {
    switch await onPlainThreadReturning(body) {
    case .success: nil
    case .failure(let error): error
    }
}

/// Runs `body` on a thread of its own and returns what it returned or threw.
func onPlainThreadReturning<Value: Sendable>(_ body: @escaping @Sendable () throws(AirlockError) -> Value) async -> Result<Value, AirlockError> {
    await withCheckedContinuation { (continuation: CheckedContinuation<Result<Value, AirlockError>, Never>) in
        Thread.detachNewThread {
            do throws(AirlockError) {
                continuation.resume(returning: .success(try body()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
    }
}
