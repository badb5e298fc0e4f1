import Experts

/// Integer maps as typed ids, for tests that build or compare placements from ranges.
func experts(_ indices: some Sequence<Int>) -> [LogicalExpert] { indices.map { LogicalExpert($0) } }
func slots(_ indices: some Sequence<Int>) -> [PhysicalSlot] { indices.map { PhysicalSlot($0) } }
