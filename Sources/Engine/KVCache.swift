import Checkpoint
public import Compute
public import Models

/// The paged KV cache of every attention layer of a model on one rank.
public struct KVCache {
    public let layers: [LayerKVCache]
    public let blockSize: Int
    public let blockCount: Int

    /// Bytes one block takes across all layers (keys and values, or latent attention's rows).
    public static func blockBytes(model: CausalLM, blockSize: Int, dtype: DType) -> Int {
        let row = model.configuration.cacheRow
        return model.configuration.decoder.layerCount * (row.holdsValues ? 2 : 1) * blockSize * row.width * dtype.byteCount
    }

    public init(model: CausalLM, blockSize: Int, blockCount: Int, backend: any Backend) throws {
        let row = model.configuration.cacheRow
        let shape = Shape(blockCount, blockSize, row.width)
        layers = try (0..<model.configuration.decoder.layerCount).map { _ in
            let keys = try backend.makeTensor(shape, backend.activationDType, in: .kvCache)
            return LayerKVCache(keys: keys, values: row.holdsValues ? try backend.makeTensor(shape, backend.activationDType, in: .kvCache) : keys)
        }
        self.blockSize = blockSize
        self.blockCount = blockCount
    }
}
