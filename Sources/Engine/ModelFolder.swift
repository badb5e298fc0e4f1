import Checkpoint
public import Compute
public import Messages
public import Models

extension CausalLM {
    /// Reads `folder/config.json` and builds the model with weights from the folder or, with
    /// `.dummy`, from `DummyWeights(seed:)` (only `config.json` is needed then).
    public static func load(folder: String, format: LoadFormat, dummySeed: UInt64 = 0,
                            on backend: any Backend) throws -> CausalLM {
        let configuration = try ModelConfiguration(folder: folder)
        let source: any WeightSource = switch format {
        case .auto: try WeightFiles(folder: folder)
        case .dummy: DummyWeights(seed: dummySeed)
        }
        return try load(configuration, from: source, on: backend)
    }
}
