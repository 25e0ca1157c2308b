import Altp2m

/// Why a request failed, as the daemon reports it.
enum RequestError: Error {
    /// The hypervisor (engine) returned an error number.
    case xen(XenErrno, String)
    /// Not the hypervisor's error: unknown domain name, bad token, ...
    case refused(String)
    /// A malformed argument (the CLI exits 2 for these).
    case usage(String)

    var json: JSONValue {
        switch self {
        case .xen(let errno, let message):
            ["ok": false, "errno": .string(errno.name), "code": .int(Int64(errno.code)), "message": .string(message)]
        case .refused(let message):
            ["ok": false, "error": .string(message)]
        case .usage(let message):
            ["ok": false, "error": .string(message), "usage": true]
        }
    }
}

/// An answer to one request, with descriptors to attach (SCM_RIGHTS).
struct Reply {
    var body: JSONValue
    /// Sent with the answer.
    var fds: [Int32] = []
    /// Closed once the answer is sent (descriptors opened only to be passed on).
    var ownedFDs: [Int32] = []

    init(fields: [String: JSONValue], fds: [Int32] = [], ownedFDs: [Int32] = []) {
        var object = fields
        object["ok"] = true
        body = .object(object)
        self.fds = fds
        self.ownedFDs = ownedFDs
    }

    init(error: RequestError) {
        body = error.json
    }

    func closeDescriptors() {
        WireFrame.closeAll(ownedFDs)
    }
}

/// Typed access to a request's arguments; each failure names the argument.
struct RequestArguments {
    let fields: [String: JSONValue]

    func uint(_ key: String) throws(RequestError) -> UInt64 {
        guard let value = fields[key] else { throw .usage("missing argument '\(key)'") }
        if let number = value.uint64 { return number }
        if let text = value.string {
            let lower = text.lowercased()
            if lower == "~0" { return ~0 }
            if lower.hasPrefix("0x"), let number = UInt64(lower.dropFirst(2), radix: 16) { return number }
            if let number = UInt64(lower) { return number }
        }
        throw .usage("argument '\(key)' must be a non-negative integer, not \(value.serialized)")
    }

    func optionalUInt(_ key: String) throws(RequestError) -> UInt64? {
        fields[key] == nil || fields[key] == .null ? nil : try uint(key)
    }

    func bounded<T: FixedWidthInteger & UnsignedInteger>(_ key: String, as: T.Type) throws(RequestError) -> T {
        let value = try uint(key)
        guard let typed = T(exactly: value) else { throw .usage("argument '\(key)' is out of range: \(value)") }
        return typed
    }

    func bool(_ key: String, default fallback: Bool? = nil) throws(RequestError) -> Bool {
        guard let value = fields[key] else {
            if let fallback { return fallback }
            throw .usage("missing argument '\(key)'")
        }
        if let flag = value.bool { return flag }
        if let number = value.uint64 { return number != 0 }
        throw .usage("argument '\(key)' must be true or false")
    }

    func string(_ key: String) throws(RequestError) -> String {
        guard let value = fields[key]?.string else { throw .usage("missing argument '\(key)'") }
        return value
    }

    func optionalString(_ key: String) -> String? { fields[key]?.string }
}

extension GFN {
    /// `"0x1a2"`, the JSON form of a gfn (`"~0"` for INVALID_GFN).
    var json: JSONValue { isInvalid ? "~0" : .string("0x" + String(rawValue, radix: 16)) }
}

extension MFN {
    var json: JSONValue { isInvalid ? "~0" : .string("0x" + String(rawValue, radix: 16)) }
}
