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
        case .deepseekV2(let decoder, let moe, let attention), .deepseekV3(let decoder, let moe, let attention):
            return try DeepSeek.load(configuration, decoder: decoder, moe: moe, attention: attention, loader: loader)
        case .gptOss(let decoder, let moe, let slidingWindow, let slidingLayers):
            return try GptOss.load(configuration, decoder: decoder, moe: moe, slidingWindow: slidingWindow, slidingLayers: slidingLayers,
                                   loader: loader)
        }
    }
}

extension CausalLM {
    /// Writes experts from `source` into this rank's slots: for each restore, expert `expert` of
    /// decoder layer `layer` into row `slot` of the layer's expert weights. What a rank runs
    /// after a peer it shared experts with is lost, for the experts no other rank holds.
    public func restoreExperts(_ restores: [(layer: Int, slot: Int, expert: LogicalExpert)], from source: any WeightSource,
                               on backend: any Backend) throws {
        let loader = WeightLoader(source: source, backend: backend)
        for layer in Set(restores.map(\.layer)).sorted() {
            guard layers.indices.contains(layer), case .sparse(let moe) = layers[layer].feedForward else {
                throw CheckpointError.badConfiguration(file: "config.json", field: "num_hidden_layers",
                                                       reason: "layer \(layer) has no experts to restore")
            }
            let slots = restores.filter { $0.layer == layer }.map { (slot: $0.slot, expert: $0.expert.index) }
            try loader.fill(moe.experts, slots: slots, count: configuration.moe.expertCount, names: moe.expertNames)
        }
    }
}
