public import Compute
import Foundation

/// The weights of a checkpoint folder: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists, each mapped once.
public final class WeightFiles: Sendable {
    public let folder: String
    private let files: [SafetensorsFile]
    private let fileByTensor: [String: Int]

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
    }

    public var tensorNames: Dictionary<String, Int>.Keys { fileByTensor.keys }

    public func contains(_ name: String) -> Bool { fileByTensor[name] != nil }

    /// The named tensor, checked against the shape the model expects.
    public func tensor(_ name: String, shape expected: Shape) throws -> HostTensor {
        guard let index = fileByTensor[name], let tensor = files[index].tensor(named: name) else {
            throw CheckpointError.missingTensor(name: name, searched: folder)
        }
        guard tensor.shape == expected else {
            throw CheckpointError.shapeMismatch(name: name, file: (files[index].path as NSString).lastPathComponent,
                                                expected: expected.dimensions, found: tensor.shape.dimensions)
        }
        return tensor
    }
}
