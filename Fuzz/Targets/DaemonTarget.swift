import Altp2m
import Altp2mSim
#if canImport(Glibc)
import Glibc
#endif

/// Target `daemon`: the simulator daemon's wire, as `chanctl` and guest
/// processes speak it: the bytes are what one client connection sent
/// (length-prefixed frames of JSON requests) before it closed, served by a
/// real `SimDaemon` (engine, journal, state files) in this process.
///
/// The string `@@@@@@@@TOKEN@@@@@@@@@@@@@@@@@@@` (32 bytes, a token's
/// length) is replaced by the token of the first guest domain, so the
/// fuzzer can reach the guest operations that a token guards without
/// reading the daemon's answers. A daemon serves 256 inputs (or until one
/// stops it), then a fresh one starts in a fresh state directory.
///
/// Oracle: no trap, no sanitizer report, no hang (libFuzzer's timeout): every
/// request gets an answer or closes the connection.
enum DaemonTarget {
    static let target = FuzzTarget(
        name: "daemon", summary: "the simulator daemon's request frames and JSON, one connection per input",
        run: { bytes throws(OracleViolation) in run(bytes) }, seeds: seeds)

    static let tokenPlaceholder = Array("@@@@@@@@TOKEN@@@@@@@@@@@@@@@@@@@".utf8)

    final class Host: @unchecked Sendable {
        // @unchecked: libFuzzer and the replay test call targets from one thread.
        var daemon: SimDaemon?
        var directory: String?
        var served = 0

        func current() -> SimDaemon? {
            if let daemon, served < 256 { served += 1; return daemon }
            reset()
            let root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
            var template = Array("\(root)/securechannel-fuzz-daemon.XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { return nil }
            let path = String(cString: template)
            var configuration = SimDaemon.Configuration()
            configuration.machineFrames = 8192
            guard let fresh = try? SimDaemon(stateDirectory: StateDirectory(path: path), configuration: configuration) else {
                return nil
            }
            // The first guest, for the token placeholder.
            _ = fresh.serveClosedConnection(DaemonTarget.frame(#"{"op":"domain.create","name":"guest1","vcpus":2,"memory_mib":16,"altp2m":"external"}"#))
            daemon = fresh
            directory = path
            served = 1
            return fresh
        }

        func reset() {
            daemon = nil
            if let directory { removeTree(directory) }
            directory = nil
        }
    }

    nonisolated(unsafe) static let host = Host()

    static func run(_ bytes: [UInt8]) {
        guard let daemon = host.current() else { return }
        let stream = substituteToken(bytes, token: daemon.firstGuestToken)
        if !daemon.serveClosedConnection(stream) { host.reset() }
    }

    static func substituteToken(_ bytes: [UInt8], token: String?) -> [UInt8] {
        guard let token, token.utf8.count == tokenPlaceholder.count, bytes.count >= tokenPlaceholder.count else { return bytes }
        var out = bytes
        var i = 0
        while i + tokenPlaceholder.count <= out.count {
            if out[i..<(i + tokenPlaceholder.count)].elementsEqual(tokenPlaceholder) {
                out.replaceSubrange(i..<(i + tokenPlaceholder.count), with: Array(token.utf8))
                i += tokenPlaceholder.count
            } else {
                i += 1
            }
        }
        return out
    }

    static func frame(_ json: String) -> [UInt8] {
        let body = Array(json.utf8)
        return withUnsafeBytes(of: UInt32(body.count).littleEndian) { Array($0) } + body
    }

    /// Genuine requests of every family, as the clients send them.
    static func seeds() -> [[UInt8]] {
        let token = String(decoding: tokenPlaceholder, as: UTF8.self)
        let sessions: [[String]] = [
            [#"{"op":"hello"}"#, #"{"op":"sim.status"}"#, #"{"op":"domain.list"}"#],
            [#"{"op":"domain.create","name":"g2","vcpus":1,"memory_mib":8,"altp2m":"external"}"#,
             #"{"op":"altp2m.set-state","domain":"guest1","state":1}"#,
             #"{"op":"altp2m.create-view","domain":"guest1","default_access":"rwx"}"#,
             #"{"op":"altp2m.set-access","domain":"guest1","view":1,"gfn":16,"access":"n"}"#,
             #"{"op":"altp2m.get-access","domain":"guest1","view":1,"gfn":16}"#,
             #"{"op":"altp2m.change-gfn","domain":"guest1","view":1,"old_gfn":16,"new_gfn":32}"#,
             #"{"op":"sim.view-entry","domain":"guest1","view":1,"gfn":16}"#,
             #"{"op":"altp2m.switch-view","domain":"guest1","view":1}"#,
             #"{"op":"guest.access","domain":"guest1","vcpu":0,"gfn":16,"kind":"w"}"#,
             #"{"op":"altp2m.destroy-view","domain":"guest1","view":1}"#,
             #"{"op":"domain.destroy","domain":"g2"}"#],
            [#"{"op":"monitor.enable","domain":"guest1","access_required":true,"singlestep_events":false}"#,
             #"{"op":"altp2m.set-state","domain":"guest1","state":1}"#,
             #"{"op":"altp2m.set-suppress-ve-multi","domain":"guest1","view":0,"first_gfn":1,"last_gfn":9,"suppress_ve":false}"#,
             #"{"op":"altp2m.enable-notify","domain":"guest1","vcpu":0,"gfn":40}"#,
             #"{"op":"guest.vmfunc","domain":"guest1","vcpu":0,"index":0,"eax":0}"#,
             #"{"op":"monitor.events","domain":"guest1"}"#,
             #"{"op":"host.drop","domain":"guest1","gfn":12}"#, #"{"op":"host.populate","domain":"guest1","gfn":12}"#],
            [#"{"op":"guest.attach","token":"\#(token)"}"#, #"{"op":"guest.sync","token":"\#(token)"}"#,
             #"{"op":"guest.window","token":"\#(token)","view":0,"first_gfn":4,"pages":2}"#,
             #"{"op":"guest.descriptor-names","token":"\#(token)"}"#,
             #"{"op":"guest.descriptor","token":"\#(token)","name":"x"}"#],
            [#"{"op":"altp2m.raw","domain":"guest1","cmd":1,"version":1,"pad1":0,"pad2":0,"payload":"00","domid_field":1}"#],
        ]
        return sessions.map { $0.flatMap(frame) }
    }
}

/// Removes a directory tree the daemon wrote (files and subdirectories).
func removeTree(_ path: String) {
    guard let dir = opendir(path) else { unlink(path); return }
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name == "." || name == ".." { continue }
        let child = path + "/" + name
        if entry.pointee.d_type == UInt8(DT_DIR) { removeTree(child) } else { unlink(child) }
    }
    closedir(dir)
    rmdir(path)
}
