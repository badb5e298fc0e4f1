/// `namespace(...)`: the one mutable object a template may assign members of.
public final class Namespace {
    var members: Mapping

    init(_ members: Mapping) { self.members = members }
}
