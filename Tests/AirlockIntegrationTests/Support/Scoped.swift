/// Runs `body` with `resource`, then `cleanup` with it, however `body` ends (the `with`
/// helpers of ``Daemon``, ``GatewayProcess`` and ``TemporaryUser``).
func withCleanup<Resource, Result>(
    of resource: Resource, _ cleanup: (Resource) async -> Void, _ body: (Resource) async throws -> Result
) async throws -> Result {
    do {
        let result = try await body(resource)
        await cleanup(resource)
        return result
    } catch {
        await cleanup(resource)
        throw error
    }
}
