public import Compute
import Foundation

/// The weights of a checkpoint folder: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists, each mapped once. Quantized weights that
/// `config.json`'s `quantization_config` describes are dequantized to float32 as they are read:
/// DeepSeek-V3's block-scaled FP8 (`quant_method: fp8`, a `weight_scale_inv` beside each e4m3
/// weight) and GPT-OSS's MXFP4 (`quant_method: mxfp4`, `NAME_blocks` and `NAME_scales` for `NAME`).
public final class WeightFiles: Sendable {
    public let folder: String
    private let files: [SafetensorsFile]
    private let fileByTensor: [String: Int]
    /// Rows and columns of an FP8 weight's scaled blocks.
    private let fp8Block: (rows: Int, columns: Int)

    public init(folder: String) throws {
        self.folder = folder
        let indexPath = folder + "/model.safetensors.index.json"
        let fileNames: [String]
        if FileManager.default.fileExists(atPath: indexPath) {
            guard let data = FileManager.default.contents(atPath: indexPath),
                  let index = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let weightMap = index["weight_map"] as? [String: String] else {
                throw CheckpointError.badConfiguration(file: "model.safetensors.index.json", field: "weight_map",
                                                       reason: "missing or not an object of tensor name to file name")
            }
            fileNames = Array(Set(weightMap.values)).sorted()
        } else {
            let single = folder + "/model.safetensors"
            guard FileManager.default.fileExists(atPath: single) else {
                throw CheckpointError.missingFile(path: single + " (nor model.safetensors.index.json)")
            }
            fileNames = ["model.safetensors"]
        }
        files = try fileNames.map { try SafetensorsFile(path: folder + "/" + $0) }
        var fileByTensor: [String: Int] = [:]
        for (index, file) in files.enumerated() {
            for name in file.tensorNames { fileByTensor[name] = index }
        }
        self.fileByTensor = fileByTensor
        var block = (rows: 128, columns: 128)
        let configPath = folder + "/config.json"
        if FileManager.default.fileExists(atPath: configPath),
           let quantization = try ConfigurationFields(contentsOf: configPath).object("quantization_config") {
            let method = try quantization.optionalString("quant_method") ?? "none"
            switch method {
            case "fp8":
                let sizes = try quantization.intList("weight_block_size", default: [128, 128])
                guard sizes.count == 2, sizes.allSatisfy({ $0 > 0 }) else {
                    throw CheckpointError.badConfiguration(file: "config.json", field: "weight_block_size",
                                                           reason: "expected two positive sizes, found \(sizes)")
                }
                block = (sizes[0], sizes[1])
            case "mxfp4":
                break
            default:
                throw CheckpointError.badConfiguration(file: "config.json", field: "quant_method",
                                                       reason: "unsupported '\(method)' (supported: fp8 with block scales, mxfp4)")
            }
        }
        fp8Block = block
    }

    public var tensorNames: Dictionary<String, Int>.Keys { fileByTensor.keys }

    public func contains(_ name: String) -> Bool { fileByTensor[name] != nil || fileByTensor[name + "_blocks"] != nil }

    /// The named tensor (dequantized when stored quantized), checked against the shape the model expects.
    public func tensor(_ name: String, shape expected: Shape) throws -> HostTensor {
        let tensor: HostTensor, file: String
        if let stored = stored(name) {
            file = stored.file
            if stored.tensor.dtype == .float8E4M3 {
                let scaleName = name + "_scale_inv"
                guard let scales = self.stored(scaleName)?.tensor else {
                    throw CheckpointError.missingTensor(name: scaleName + " (the block scales of an FP8 weight)", searched: folder)
                }
                let values = try Dequantization.blockFP8(stored.tensor, scales: scales, block: fp8Block, name: name)
                tensor = HostFloatBuffer(values).tensor(stored.tensor.shape)
            } else {
                tensor = stored.tensor
            }
        } else if let blocks = stored(name + "_blocks") {
            guard let scales = stored(name + "_scales")?.tensor else {
                throw CheckpointError.missingTensor(name: name + "_scales (the scales of MXFP4 blocks)", searched: folder)
            }
            let (values, shape) = try Dequantization.mxfp4(blocks: blocks.tensor, scales: scales, name: name)
            tensor = HostFloatBuffer(values).tensor(shape)
            file = blocks.file
        } else {
            throw CheckpointError.missingTensor(name: name, searched: folder)
        }
        guard tensor.shape == expected else {
            throw CheckpointError.shapeMismatch(name: name, file: file, expected: expected.dimensions, found: tensor.shape.dimensions)
        }
        guard tensor.dtype != .uint8 else {
            throw CheckpointError.unsupportedDType(file: file, tensor: name, dtype: tensor.dtype.rawValue)
        }
        return tensor
    }

    private func stored(_ name: String) -> (tensor: HostTensor, file: String)? {
        guard let index = fileByTensor[name], let tensor = files[index].tensor(named: name) else { return nil }
        return (tensor, (files[index].path as NSString).lastPathComponent)
    }
}
