import Foundation

/// What `generation_config.json` and `config.json` say about stopping and sampling defaults.
public struct GenerationConfiguration: Sendable, Equatable {
    public let eosTokenIDs: [Int]
    public let bosTokenID: Int?

    public init(eosTokenIDs: [Int], bosTokenID: Int?) {
        self.eosTokenIDs = eosTokenIDs
        self.bosTokenID = bosTokenID
    }

    /// `generation_config.json` wins over `config.json`; either may be absent.
    public init(folder: String) throws {
        var eos: [Int] = []
        var bos: Int?
        for name in ["config.json", "generation_config.json"] {
            let path = folder + "/" + name
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let fields = try ConfigurationFields(contentsOf: path)
            let fileEOS = try fields.intOrIntList("eos_token_id")
            if !fileEOS.isEmpty { eos = fileEOS }
            if let fileBOS = try fields.optionalInt("bos_token_id") { bos = fileBOS }
        }
        self.init(eosTokenIDs: eos, bosTokenID: bos)
    }
}
