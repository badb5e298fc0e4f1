public import Checkpoint
public import Compute
public import Experts

extension CausalLM {
    /// Builds the model that `configuration` describes, with weights from `source`, on `backend`.
    /// - Parameter expertSelection: the logical experts this rank holds, slot by slot (the same in
    ///   every MoE layer); `nil` loads them all.
    public static func load(_ configuration: ModelConfiguration, from source: any WeightSource,
                            on backend: any Backend, expertSelection: [LogicalExpert]? = nil) throws -> CausalLM {
        let loader = WeightLoader(source: source, backend: backend, expertSelection: expertSelection)
        switch configuration {
        case .qwen3MoE(let decoder, let moe):
            return try Qwen3MoE.load(configuration, decoder: decoder, moe: moe, loader: loader)
        case .qwen2MoE(let decoder, let moe):
            return try Qwen2MoE.load(configuration, decoder: decoder, moe: moe, loader: loader)
        case .mixtral(let decoder, let moe, let slidingWindow):
            return try Mixtral.load(configuration, decoder: decoder, moe: moe, slidingWindow: slidingWindow, loader: loader)
        case .olmoE(let decoder, let moe, let clipQKV):
            return try OLMoE.load(configuration, decoder: decoder, moe: moe, clipQKV: clipQKV, loader: loader)
        }
    }
}
