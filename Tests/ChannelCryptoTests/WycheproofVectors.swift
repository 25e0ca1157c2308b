import ChannelCrypto
import Foundation

/// Decoding of the Wycheproof (C2SP/wycheproof, `testvectors_v1/`) JSON files
/// in `Vectors/`; see `Vectors/README.md` for their origin. Only the fields
/// the tests use are decoded; an unexpected shape fails the decoding, and so
/// the test, rather than skipping cases.
enum Wycheproof {
    /// A vector file: its header and its groups of test cases.
    struct File<Group: Decodable>: Decodable {
        let algorithm: String
        let numberOfTests: Int
        let testGroups: [Group]
    }

    /// What the case expects of a correct implementation. "acceptable" means
    /// either outcome is allowed; the tests decide per flag (docs/CRYPTO.md).
    enum Expectation: String, Decodable {
        case valid, invalid, acceptable
    }

    /// `aead_test_schema_v1.json`.
    struct AEADGroup: Decodable {
        let ivSize: Int
        let keySize: Int
        let tagSize: Int
        let tests: [AEADCase]
    }

    struct AEADCase: Decodable {
        let tcId: Int
        let comment: String
        let flags: [String]
        let key: Hexed
        let iv: Hexed
        let aad: Hexed
        let msg: Hexed
        let ct: Hexed
        let tag: Hexed
        let result: Expectation
    }

    /// `xdh_comp_schema_v1.json`.
    struct XDHGroup: Decodable {
        let curve: String
        let tests: [XDHCase]
    }

    struct XDHCase: Decodable {
        let tcId: Int
        let comment: String
        let flags: [String]
        let `public`: Hexed
        let `private`: Hexed
        let shared: Hexed
        let result: Expectation
    }

    /// `eddsa_verify_schema_v1.json`.
    struct EdDSAGroup: Decodable {
        struct PublicKey: Decodable {
            let curve: String
            let pk: Hexed
        }
        let publicKey: PublicKey
        let tests: [EdDSACase]
    }

    struct EdDSACase: Decodable {
        let tcId: Int
        let comment: String
        let flags: [String]
        let msg: Hexed
        let sig: Hexed
        let result: Expectation
    }

    /// A hex string field, decoded with ChannelCrypto's own strict decoder.
    struct Hexed: Decodable {
        let bytes: [UInt8]

        init(from decoder: any Decoder) throws {
            let text = try decoder.singleValueContainer().decode(String.self)
            bytes = try Hex.decode(text)
        }
    }

    /// Loads `Vectors/<name>.json` from the test bundle.
    static func load<Group: Decodable>(_ name: String, as _: Group.Type) throws -> File<Group> {
        guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Vectors") else {
            throw VectorError.missing(name)
        }
        return try JSONDecoder().decode(File<Group>.self, from: Data(contentsOf: url))
    }

    enum VectorError: Error, CustomStringConvertible {
        case missing(String)
        var description: String {
            switch self {
            case let .missing(name): return "test vector file Vectors/\(name).json is not in the test bundle"
            }
        }
    }
}
