/// The shared secret that ranks present to join a cluster.
public enum JoinToken {
    /// Compares in time that depends on the lengths only, so that timing does not reveal how much of a guess is right.
    public static func matches(_ presented: String, _ expected: String) -> Bool {
        let lhs = Array(presented.utf8), rhs = Array(expected.utf8)
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }
}
