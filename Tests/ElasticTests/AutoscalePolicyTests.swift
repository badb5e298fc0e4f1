import Elastic
import Testing

struct AutoscalePolicyTests {
    /// Target 8 a rank, grow after 10 s above, shrink after 30 s below 4, 60 s of cool-down, 2 ... 4 ranks.
    static func policy(minimumForExperts: Int = 1) throws -> AutoscalePolicy {
        AutoscalePolicy(try AutoscalePolicy.Configuration(
            minSize: 2, maxSize: 4, minimumForExperts: minimumForExperts, targetRequestsPerRank: 8, upWindow: .seconds(10),
            downWindow: .seconds(30), cooldown: .seconds(60)))
    }

    /// Feeds one sample a second from `start` for `seconds`; returns the decisions with their times.
    static func run(_ policy: inout AutoscalePolicy, from start: Int, seconds: Int, size: Int,
                    requests: Int) -> [(Int, AutoscalePolicy.Decision)] {
        (start..<(start + seconds)).compactMap { second in
            policy.observe(.init(time: .seconds(second), size: size, requests: requests)).map { (second, $0) }
        }
    }

    @Test func aLoadAboveTheTargetForTheWindowGrowsToTheSizeThatCarriesIt() throws {
        var policy = try Self.policy()
        // 20 a rank from t = 0: the window is full at t = 10; ⌈40 / 8⌉ = 5, at most 4.
        let decisions = Self.run(&policy, from: 0, seconds: 20, size: 2, requests: 40)
        #expect(decisions.map(\.0) == [10])
        #expect(decisions.first?.1.size == 4)
        #expect(decisions.first?.1.reason.contains("40 requests on 2 ranks (20 a rank, above 8") == true)
    }

    @Test func aBriefBurstDoesNotScale() throws {
        var policy = try Self.policy()
        #expect(Self.run(&policy, from: 0, seconds: 9, size: 2, requests: 40).isEmpty)
        #expect(Self.run(&policy, from: 9, seconds: 1, size: 2, requests: 10).isEmpty, "5 a rank: the window starts again")
        #expect(Self.run(&policy, from: 10, seconds: 10, size: 2, requests: 40).isEmpty)
        #expect(Self.run(&policy, from: 20, seconds: 1, size: 2, requests: 40).map(\.1.size) == [4])
    }

    @Test func aLowLoadShrinksAfterItsLongerWindowButNotBelowTheMinimum() throws {
        var policy = try Self.policy()
        // 1.5 a rank, under half the target: at t = 30, ⌈6 / 8⌉ = 1, at least 2.
        let decisions = Self.run(&policy, from: 0, seconds: 40, size: 4, requests: 6)
        #expect(decisions.map(\.0) == [30] && decisions.map(\.1.size) == [2])
        // Between half the target and the target nothing changes.
        var steady = try Self.policy()
        #expect(Self.run(&steady, from: 0, seconds: 100, size: 3, requests: 18).isEmpty)
    }

    @Test func nothingIsDecidedWhileAScaleRunsNorDuringTheCooldown() throws {
        var policy = try Self.policy()
        #expect(Self.run(&policy, from: 0, seconds: 11, size: 2, requests: 40).count == 1)
        // Still scaling: the load stays high, no second decision.
        #expect(Self.run(&policy, from: 11, seconds: 20, size: 2, requests: 40).isEmpty)
        policy.scaleEnded(at: .seconds(31))
        // Cool-down until t = 91, though 3 ranks at 40 requests are above the target the whole time.
        #expect(Self.run(&policy, from: 31, seconds: 60, size: 3, requests: 40).isEmpty)
        #expect(Self.run(&policy, from: 91, seconds: 1, size: 3, requests: 40).map(\.1.size) == [4])
    }

    @Test func aManualScaleHoldsThePolicyAndRestartsTheCooldown() throws {
        var policy = try Self.policy()
        policy.scaleBegan()
        #expect(Self.run(&policy, from: 0, seconds: 30, size: 2, requests: 40).isEmpty)
        policy.scaleEnded(at: .seconds(30))
        #expect(Self.run(&policy, from: 30, seconds: 60, size: 2, requests: 40).isEmpty)
        #expect(Self.run(&policy, from: 90, seconds: 1, size: 2, requests: 40).map(\.1.size) == [4])
    }

    @Test func theMinimumNeverGoesBelowTheSizeThatHoldsEveryExpert() throws {
        var policy = try Self.policy(minimumForExperts: 3)
        #expect(policy.configuration.minSize == 3)
        #expect(Self.run(&policy, from: 0, seconds: 40, size: 4, requests: 0).map(\.1.size) == [3])
        // A cluster started outside the bounds is brought inside them.
        var outside = try Self.policy(minimumForExperts: 3)
        #expect(outside.observe(.init(time: .zero, size: 2, requests: 16))?.size == 3)
    }

    @Test func badBoundsAreRefusedNamingTheFlag() {
        #expect(throws: AutoscaleError.self) {
            _ = try AutoscalePolicy.Configuration(minSize: 3, maxSize: 2, minimumForExperts: 1, targetRequestsPerRank: 8,
                                                  upWindow: .seconds(1), downWindow: .seconds(1), cooldown: .zero)
        }
        do {
            _ = try AutoscalePolicy.Configuration(minSize: 1, maxSize: 2, minimumForExperts: 3, targetRequestsPerRank: 8,
                                                  upWindow: .seconds(1), downWindow: .seconds(1), cooldown: .zero)
            Issue.record("a maximum that cannot hold every expert was accepted")
        } catch {
            #expect(error.description.contains("--elastic-ep-max-size 2 cannot hold every expert"))
        }
        #expect(throws: AutoscaleError.self) {
            _ = try AutoscalePolicy.Configuration(minSize: 1, maxSize: 2, minimumForExperts: 1, targetRequestsPerRank: 0,
                                                  upWindow: .seconds(1), downWindow: .seconds(1), cooldown: .zero)
        }
    }
}
