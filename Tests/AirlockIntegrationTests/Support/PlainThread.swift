import AirlockClient
import Foundation

/// Runs `body` on a thread of its own (the blocking client API must never run on a Swift
/// concurrency pool thread) and returns the error it threw, or nil.
func onPlainThread(_ body: @escaping @Sendable () throws(AirlockError) -> Void) async -> AirlockError? {
    await withCheckedContinuation { (continuation: CheckedContinuation<AirlockError?, Never>) in
        Thread.detachNewThread {
            do throws(AirlockError) {
                try body()
                continuation.resume(returning: nil)
            } catch {
                continuation.resume(returning: error)
            }
        }
    }
}
