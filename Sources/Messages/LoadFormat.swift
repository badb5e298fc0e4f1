/// How weights are obtained: from the checkpoint's safetensors, or seeded random values.
public enum LoadFormat: String, Codable, Sendable, CaseIterable {
    case auto
    case dummy
}
