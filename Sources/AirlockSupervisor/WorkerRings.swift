import AirlockChannel
import AirlockPosix

/// The supervisor's end of a worker's shared-memory channel (PROTOCOL.md §5.5): requests
/// go out through one ring, the worker's frames come back through the other, and the
/// worker rings the doorbell (an eventfd, registered edge-triggered) when it writes to a
/// ring the supervisor had emptied, or frees space the supervisor waits for.
///
/// The socket stays as the channel's other half: it carries `W_FATAL` (sent from signal
/// handlers, where a ring cannot be used) and tells of the worker's death by closing.
final class WorkerRings {
    /// The mapping both rings live in.
    let region: ChannelRegion
    /// Requests to the worker.
    var requests: RingProducer
    /// Frames from the worker: every value read from it is checked.
    var answers: RingConsumer
    /// The worker's doorbell: readable (edge-triggered, never read) each time it rings.
    let doorbell: EventDescriptor
    /// The doorbell's registration in the event loop.
    var doorbellToken: UInt64 = 0
    /// When the ring began to hold a large result for a client whose output is queued
    /// (0: it holds none); see ``Supervisor/holdsInRing(_:_:for:)``.
    var holdingSince: UInt64 = 0

    init(region: ChannelRegion, doorbell: EventDescriptor) {
        self.region = region
        self.requests = RingProducer(region.toWorker)
        self.answers = RingConsumer(region.toSupervisor)
        self.doorbell = doorbell
    }
}
