import Checkpoint
import Compute
import Foundation
import Testing

/// Writes a safetensors file from a header and raw data, so tests can make broken ones.
private func writeSafetensors(_ path: String, header: String, data: [UInt8]) throws {
    var bytes: [UInt8] = []
    var length = UInt64(header.utf8.count).littleEndian
    withUnsafeBytes(of: &length) { bytes += $0 }
    bytes += Array(header.utf8) + data
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func temporaryFolder() throws -> String {
    let path = NSTemporaryDirectory() + "flexpert-checkpoint-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct SafetensorsTests {
    @Test func readsTensorsOfEveryDType() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]},"__metadata__":{"format":"pt"}}"#
        let one = Float(1).bitPattern, two = Float(2).bitPattern
        var data: [UInt8] = []
        for word in [one, two] { withUnsafeBytes(of: word.littleEndian) { data += $0 } }
        data += [0x80, 0x3F, 0x00, 0x40]  // bf16 1.0, 2.0
        try writeSafetensors(folder + "/model.safetensors", header: header, data: data)
        let files = try WeightFiles(folder: folder)
        let a = try files.tensor("a", shape: Shape(2))
        #expect(a.dtype == .float32 && Array(a.bytes.bindMemory(to: Float.self)) == [1, 2])
        let b = try files.tensor("b", shape: Shape(1, 2))
        #expect(b.dtype == .bfloat16 && b.bytes.count == 4)
        #expect(throws: CheckpointError.shapeMismatch(name: "b", file: "model.safetensors", expected: [2, 1], found: [1, 2])) {
            try files.tensor("b", shape: Shape(2, 1))
        }
        #expect(throws: CheckpointError.missingTensor(name: "c", searched: folder)) { try files.tensor("c", shape: Shape(1)) }
    }

    @Test func truncatedFileNamesTheTensor() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let header = #"{"weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        try writeSafetensors(folder + "/model.safetensors", header: header, data: [0, 0, 0, 0])
        #expect(throws: CheckpointError.truncated(file: "model.safetensors", tensor: "weight",
                                                  needsBytes: 8 + header.utf8.count + 16, fileBytes: 8 + header.utf8.count + 4)) {
            try WeightFiles(folder: folder)
        }
    }

    @Test func badHeadersAreErrors() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/model.safetensors"
        try writeSafetensors(path, header: "not json", data: [])
        #expect(throws: CheckpointError.badHeader(file: "model.safetensors", reason: "header is not a JSON object")) {
            try SafetensorsFile(path: path)
        }
        try writeSafetensors(path, header: #"{"w":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}"#, data: [0])
        #expect(throws: CheckpointError.unsupportedDType(file: "model.safetensors", tensor: "w", dtype: "I8")) {
            try SafetensorsFile(path: path)
        }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect(throws: CheckpointError.self) { try SafetensorsFile(path: path) }
        #expect(throws: CheckpointError.missingFile(path: folder + "/absent/model.safetensors (nor model.safetensors.index.json)")) {
            try WeightFiles(folder: folder + "/absent")
        }
    }
}
