/// When the cluster should grow or shrink, from what it serves: a pure state machine (a sample of
/// the load each second in, at most one scale decision out) that the elastic controller feeds and
/// tests drive alone.
///
/// The load is the requests running and waiting per rank. It grows when that stays above
/// ``Configuration/targetRequestsPerRank`` for ``Configuration/upWindow``, and shrinks when it
/// stays below half of it for ``Configuration/downWindow``; to the size that brings the load back
/// to the target, within ``Configuration/minSize`` ... ``Configuration/maxSize``. After any
/// scale (its own, a manual one, or one that failed) it waits ``Configuration/cooldown`` before it
/// decides again, and it decides nothing while a scale runs.
///
/// Worked example (target 8, windows 10 s / 30 s, sizes 2 ... 4): two ranks with 40 requests
/// (20 a rank) for 10 s → scale to 4 (⌈40 / 8⌉ = 5, at most 4); later 4 ranks with 6 requests
/// (1.5 a rank, under 4) for 30 s → scale to 2 (⌈6 / 8⌉ = 1, at least 2).
public struct AutoscalePolicy: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// The smallest size it scales to; never below the size whose slots hold every expert.
        public let minSize: Int
        public let maxSize: Int
        public let targetRequestsPerRank: Double
        public let upWindow: Duration
        public let downWindow: Duration
        public let cooldown: Duration

        /// - Parameter minimumForExperts: the fewest ranks whose slots hold every expert.
        public init(minSize: Int, maxSize: Int, minimumForExperts: Int, targetRequestsPerRank: Double, upWindow: Duration,
                    downWindow: Duration, cooldown: Duration) throws(AutoscaleError) {
            guard minSize >= 1 else { throw .invalid("--elastic-ep-min-size must be at least 1, got \(minSize)") }
            guard maxSize >= minSize else {
                throw .invalid("--elastic-ep-max-size (\(maxSize)) must be at least --elastic-ep-min-size (\(minSize))")
            }
            guard maxSize >= minimumForExperts else {
                throw .invalid("--elastic-ep-max-size \(maxSize) cannot hold every expert: at least \(minimumForExperts) ranks are needed")
            }
            guard targetRequestsPerRank > 0, targetRequestsPerRank.isFinite else {
                throw .invalid("--autoscale-target-requests-per-rank must be positive, got \(targetRequestsPerRank)")
            }
            guard upWindow >= .zero, downWindow >= .zero, cooldown >= .zero else {
                throw .invalid("--autoscale-up-window-s, --autoscale-down-window-s and --autoscale-cooldown-s must not be negative")
            }
            self.minSize = max(minSize, minimumForExperts)
            self.maxSize = maxSize
            self.targetRequestsPerRank = targetRequestsPerRank
            self.upWindow = upWindow
            self.downWindow = downWindow
            self.cooldown = cooldown
        }
    }

    /// What the cluster serves at one moment.
    public struct Sample: Sendable, Equatable {
        /// Time on a monotonic clock (any origin, the same for every sample).
        public let time: Duration
        public let size: Int
        /// Requests running and waiting on all ranks together.
        public let requests: Int

        public init(time: Duration, size: Int, requests: Int) {
            self.time = time
            self.size = size
            self.requests = requests
        }
    }

    public struct Decision: Sendable, Equatable {
        public let size: Int
        public let reason: String
    }

    public let configuration: Configuration
    /// Since when the load has been above the target (grow) or below half of it (shrink).
    private var aboveSince: Duration?
    private var belowSince: Duration?
    private var quietUntil: Duration?
    private var isScaling = false

    public init(_ configuration: Configuration) { self.configuration = configuration }

    /// The decision for `sample`, if it is time for one; the caller then runs that scale and
    /// reports its end with ``scaleEnded(at:)``.
    public mutating func observe(_ sample: Sample) -> Decision? {
        let perRank = Double(sample.requests) / Double(max(1, sample.size))
        let target = configuration.targetRequestsPerRank
        aboveSince = perRank > target ? aboveSince ?? sample.time : nil
        belowSince = perRank < target / 2 ? belowSince ?? sample.time : nil
        if isScaling { return nil }
        if let quietUntil, sample.time < quietUntil { return nil }
        let wanted = min(configuration.maxSize, max(configuration.minSize, Int((Double(sample.requests) / target).rounded(.up))))
        let load = "\(sample.requests) requests on \(sample.size) ranks (\(Self.text(perRank)) a rank"
        if let since = aboveSince, sample.time - since >= configuration.upWindow, wanted > sample.size {
            return decide(wanted, because: load + ", above \(Self.text(target)) for \(configuration.upWindow))")
        }
        if let since = belowSince, sample.time - since >= configuration.downWindow, wanted < sample.size {
            return decide(wanted, because: load + ", below \(Self.text(target / 2)) for \(configuration.downWindow))")
        }
        if sample.size < configuration.minSize || sample.size > configuration.maxSize {
            let bounded = min(configuration.maxSize, max(configuration.minSize, sample.size))
            return decide(bounded, because: "\(sample.size) ranks, outside \(configuration.minSize) ... \(configuration.maxSize)")
        }
        return nil
    }

    /// A scale began that this policy did not decide (a manual one): nothing is decided until it ends.
    public mutating func scaleBegan() { isScaling = true }

    /// A scale ended (done or failed, decided here or not): the cool-down starts.
    public mutating func scaleEnded(at time: Duration) {
        isScaling = false
        quietUntil = time + configuration.cooldown
        aboveSince = nil
        belowSince = nil
    }

    private mutating func decide(_ size: Int, because reason: String) -> Decision {
        isScaling = true
        return Decision(size: size, reason: reason)
    }

    private static func text(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value))" : "\((value * 10).rounded() / 10)"
    }
}

public enum AutoscaleError: Error, Equatable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let reason): reason
        }
    }
}
