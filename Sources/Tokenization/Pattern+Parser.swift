extension Pattern {
    struct Parser {
        let scalars: [Unicode.Scalar]
        let source: String
        var index = 0

        init(scalars: [Unicode.Scalar], source: String) {
            self.scalars = scalars
            self.source = source
        }

        private func fail(_ reason: String) -> TokenizationError {
            .badPattern(pattern: source, reason: "\(reason) at offset \(index)")
        }

        private var current: UInt32? { index < scalars.count ? scalars[index].value : nil }

        mutating func parseAlternation(caseInsensitive: Bool) throws -> Node {
            var branches = [try parseSequence(caseInsensitive: caseInsensitive)]
            while current == 0x7C {  // |
                index += 1
                branches.append(try parseSequence(caseInsensitive: caseInsensitive))
            }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        private mutating func parseSequence(caseInsensitive: Bool) throws -> Node {
            var items: [Node] = []
            while let value = current, value != 0x7C, value != 0x29 {  // | )
                var atom = try parseAtom(caseInsensitive: caseInsensitive)
                atom = try parseQuantifier(atom)
                items.append(atom)
            }
            return items.count == 1 ? items[0] : .sequence(items)
        }

        private mutating func parseQuantifier(_ atom: Node) throws -> Node {
            guard let value = current else { return atom }
            let bounds: (Int, Int)
            switch value {
            case 0x3F: bounds = (0, 1); index += 1                 // ?
            case 0x2A: bounds = (0, Int.max); index += 1           // *
            case 0x2B: bounds = (1, Int.max); index += 1           // +
            case 0x7B: bounds = try parseBraces()                  // {
            default: return atom
            }
            if current == 0x3F || current == 0x2B {
                throw fail("lazy and possessive quantifiers are not supported")
            }
            return .repetition(atom, minimum: bounds.0, maximum: bounds.1)
        }

        private mutating func parseBraces() throws -> (Int, Int) {
            index += 1
            let minimum = try parseNumber()
            var maximum = minimum
            if current == 0x2C {  // ,
                index += 1
                maximum = current == 0x7D ? Int.max : try parseNumber()
            }
            guard current == 0x7D else { throw fail("expected '}'") }
            index += 1
            guard minimum <= maximum else { throw fail("bad repetition bounds") }
            return (minimum, maximum)
        }

        private mutating func parseNumber() throws -> Int {
            var value = 0
            var digits = 0
            while let scalar = current, scalar >= 0x30, scalar <= 0x39 {
                value = value * 10 + Int(scalar - 0x30)
                digits += 1
                index += 1
            }
            guard digits > 0 else { throw fail("expected a number") }
            return value
        }

        private mutating func parseAtom(caseInsensitive: Bool) throws -> Node {
            guard let value = current else { throw fail("unexpected end") }
            switch value {
            case 0x28:  // (
                index += 1
                var groupCaseInsensitive = caseInsensitive
                var lookahead: Bool?
                if current == 0x3F {  // ?
                    index += 1
                    switch current {
                    case 0x3A: index += 1                                        // (?:
                    case 0x21: index += 1; lookahead = true                      // (?!
                    case 0x3D: index += 1; lookahead = false                     // (?=
                    case 0x69:                                                   // (?i: or (?i)
                        index += 1
                        guard current == 0x3A else { throw fail("only the (?i:…) flag group is supported") }
                        index += 1
                        groupCaseInsensitive = true
                    default: throw fail("unsupported group kind")
                    }
                }
                let inner = try parseAlternation(caseInsensitive: groupCaseInsensitive)
                guard current == 0x29 else { throw fail("expected ')'") }
                index += 1
                if let isNegative = lookahead { return .lookahead(inner, isNegative: isNegative) }
                return inner
            case 0x5B:  // [
                return .set(try parseBracket(caseInsensitive: caseInsensitive))
            case 0x2E:  // .
                index += 1
                return .set(ScalarSet(items: [.any], isNegated: false, caseInsensitive: false))
            case 0x5C:  // backslash
                index += 1
                let item = try parseEscape()
                if case .scalar(let scalar) = item { return .scalar(scalar, caseInsensitive: caseInsensitive) }
                return .set(ScalarSet(items: [item], isNegated: false, caseInsensitive: false))
            case 0x5E, 0x24:
                throw fail("anchors are not supported")
            default:
                index += 1
                return .scalar(value, caseInsensitive: caseInsensitive)
            }
        }

        private mutating func parseBracket(caseInsensitive: Bool) throws -> ScalarSet {
            index += 1
            var set = ScalarSet(items: [], isNegated: false, caseInsensitive: caseInsensitive)
            if current == 0x5E {  // ^
                set.isNegated = true
                index += 1
            }
            var isFirst = true
            while let value = current, value != 0x5D || isFirst {
                isFirst = false
                var item: ScalarSet.Item
                if value == 0x5C {
                    index += 1
                    item = try parseEscape()
                } else {
                    if value == 0x5B { throw fail("nested classes are not supported") }
                    item = .scalar(value)
                    index += 1
                }
                if case .scalar(let low) = item, current == 0x2D, index + 1 < scalars.count, scalars[index + 1].value != 0x5D {
                    index += 1
                    var highItem: ScalarSet.Item = .scalar(scalars[index].value)
                    if scalars[index].value == 0x5C {
                        index += 1
                        highItem = try parseEscape()
                    } else {
                        index += 1
                    }
                    guard case .scalar(let high) = highItem, low <= high else { throw fail("bad range in class") }
                    item = .range(low, high)
                }
                set.items.append(item)
            }
            guard current == 0x5D else { throw fail("expected ']'") }
            index += 1
            return set
        }

        /// Oniguruma's general-category names, one-letter classes and their members.
        static let categories: [String: [Unicode.GeneralCategory]] = {
            let members: [String: [Unicode.GeneralCategory]] = [
                "Lu": [.uppercaseLetter], "Ll": [.lowercaseLetter], "Lt": [.titlecaseLetter], "Lm": [.modifierLetter], "Lo": [.otherLetter],
                "Mn": [.nonspacingMark], "Mc": [.spacingMark], "Me": [.enclosingMark],
                "Nd": [.decimalNumber], "Nl": [.letterNumber], "No": [.otherNumber],
                "Pc": [.connectorPunctuation], "Pd": [.dashPunctuation], "Ps": [.openPunctuation], "Pe": [.closePunctuation],
                "Pi": [.initialPunctuation], "Pf": [.finalPunctuation], "Po": [.otherPunctuation],
                "Sm": [.mathSymbol], "Sc": [.currencySymbol], "Sk": [.modifierSymbol], "So": [.otherSymbol],
                "Zs": [.spaceSeparator], "Zl": [.lineSeparator], "Zp": [.paragraphSeparator],
                "Cc": [.control], "Cf": [.format], "Cs": [.surrogate], "Co": [.privateUse], "Cn": [.unassigned],
            ]
            var table = members
            for (letter, long) in [("M", "Mark"), ("P", "Punctuation"), ("S", "Symbol"), ("Z", "Separator"), ("C", "Other")] {
                let union = members.filter { $0.key.hasPrefix(letter) }.flatMap(\.value)
                table[letter] = union
                table[long] = union
            }
            return table
        }()

        private mutating func parseEscape() throws -> ScalarSet.Item {
            guard let value = current else { throw fail("dangling backslash") }
            index += 1
            switch value {
            case 0x73: return .whitespace     // s
            case 0x53: return .notWhitespace  // S
            case 0x64: return .digit          // d
            case 0x44: return .notDigit       // D
            case 0x77: return .word           // w
            case 0x57: return .notWord        // W
            case 0x6E: return .scalar(0x0A)   // n
            case 0x72: return .scalar(0x0D)   // r
            case 0x74: return .scalar(0x09)   // t
            case 0x66: return .scalar(0x0C)   // f
            case 0x76: return .scalar(0x0B)   // v
            case 0x70, 0x50:                  // p, P
                let isNegated = value == 0x50
                var name = ""
                if current == 0x7B {
                    index += 1
                    while let scalar = current, scalar != 0x7D {
                        name.unicodeScalars.append(scalars[index])
                        index += 1
                    }
                    guard current == 0x7D else { throw fail("expected '}' after \\p{") }
                    index += 1
                } else if let scalar = current {
                    name = String(Character(Unicode.Scalar(scalar)!))
                    index += 1
                }
                switch name {
                case "L", "Letter": return isNegated ? .notLetter : .letter
                case "N", "Number": return isNegated ? .notNumber : .number
                default:
                    guard let categories = Self.categories[name] else { throw fail("unsupported property \\p{\(name)}") }
                    return .categories(categories, isNegated: isNegated)
                }
            case 0x78:  // x
                if current == 0x7B {
                    index += 1
                    var hex = ""
                    while let scalar = current, scalar != 0x7D { hex.unicodeScalars.append(scalars[index]); index += 1 }
                    index += 1
                    guard let code = UInt32(hex, radix: 16) else { throw fail("bad \\x{…}") }
                    return .scalar(code)
                }
                guard index + 2 <= scalars.count,
                      let code = UInt32(String(String.UnicodeScalarView(scalars[index..<index + 2])), radix: 16) else {
                    throw fail("bad \\x escape")
                }
                index += 2
                return .scalar(code)
            default:
                let isLetterOrDigit = (value >= 0x30 && value <= 0x39) || ((value | 0x20) >= 0x61 && (value | 0x20) <= 0x7A)
                guard !isLetterOrDigit else { throw fail("unsupported escape \\\(Character(Unicode.Scalar(value)!))") }
                return .scalar(value)
            }
        }
    }
}
