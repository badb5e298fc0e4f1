import Checkpoint
public import Compute
public import Models

/// The paged KV cache of every attention layer of a model on one rank.
public struct KVCache {
    public let layers: [LayerKVCache]
    public let blockSize: Int
    public let blockCount: Int

    /// Bytes one block takes across all layers (keys and values).
    public static func blockBytes(model: CausalLM, blockSize: Int, dtype: DType) -> Int {
        let decoder = model.configuration.decoder
        return decoder.layerCount * 2 * blockSize * decoder.kvHeadCount * decoder.headDim * dtype.byteCount
    }

    public init(model: CausalLM, blockSize: Int, blockCount: Int, backend: any Backend) throws {
        let decoder = model.configuration.decoder
        let width = decoder.kvHeadCount * decoder.headDim
        let shape = Shape(blockCount, blockSize, width)
        layers = try (0..<decoder.layerCount).map { _ in
            LayerKVCache(keys: try backend.makeTensor(shape, backend.activationDType, in: .kvCache),
                         values: try backend.makeTensor(shape, backend.activationDType, in: .kvCache))
        }
        self.blockSize = blockSize
        self.blockCount = blockCount
    }
}
