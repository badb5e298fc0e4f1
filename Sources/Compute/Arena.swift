/// Where a tensor's memory comes from; each arena has its own lifetime.
public enum Arena: Sendable {
    /// Loaded once, lives as long as the model.
    case weights
    /// Sized once after profiling; holds the paged KV cache.
    case kvCache
    /// Reset at the start of every step by ``Backend/beginStep()``; after the first steps of a
    /// given size it reuses its memory, so a step allocates nothing.
    case scratch
}
