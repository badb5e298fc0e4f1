import ArgumentParser
import Experts
import Foundation
import Parallelism

/// `flexpert eplb`: DeepSeek's rebalancing on loads from a file, with the reference's output shapes.
struct EPLBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eplb",
        abstract: "Compute an expert placement from loads, as DeepSeek's eplb.py rebalance_experts does.",
        discussion: """
            Input: {"weight":[[…]],"num_replicas":R,"num_groups":G,"num_nodes":N,"num_gpus":M}.
            Output: {"logical_count":[[…]],"logical_to_physical_map":[[[…]]],"physical_to_logical_map":[[…]]},
            padded with -1 where an expert has fewer replicas than the most replicated one.
            """)

    @Option(help: "The JSON input file ('-' for standard input).")
    var input: String

    private struct Request: Decodable {
        let weight: [[Double]]
        let numReplicas: Int
        let numGroups: Int
        let numNodes: Int
        let numGpus: Int

        enum CodingKeys: String, CodingKey {
            case weight
            case numReplicas = "num_replicas"
            case numGroups = "num_groups"
            case numNodes = "num_nodes"
            case numGpus = "num_gpus"
        }
    }

    func run() throws {
        let data = input == "-" ? FileHandle.standardInput.readDataToEndOfFile()
            : try Data(contentsOf: URL(fileURLWithPath: input))
        let request: Request
        do {
            request = try JSONDecoder().decode(Request.self, from: data)
        } catch {
            throw ValidationError("\(input): not the expected JSON (\(error))")
        }
        let placement = try ExpertLoadBalancer.rebalance(weight: request.weight, replicas: request.numReplicas,
                                                         groups: request.numGroups, nodes: request.numNodes,
                                                         gpus: request.numGpus)
        print(try jsonText([
            "physical_to_logical_map": placement.physicalToLogical,
            "logical_to_physical_map": placement.logicalToPhysical,
            "logical_count": placement.logicalCount,
        ]))
    }
}
