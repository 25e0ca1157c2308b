import Foundation
import Testing

/// Where chanctl and guest-agent look for the simulator when no
/// `--state-dir` or `$CHANCTL_STATE_DIR` says: root's
/// /var/lib/secure-channel, an unprivileged user's temporary directory
/// (said on standard error), through the built binaries. No simulator runs
/// at either place, so each command fails naming the directory it chose.
@Suite("End to end: the state directory's default", .serialized)
struct StateDirectoryDefaultTests {
    /// Runs `arguments` (a binary and its arguments) without the variables
    /// that choose a state directory, as `user` (a uid) when given.
    func run(_ arguments: [String], user: Int? = nil) throws -> Binaries.Result {
        let drop = ["-u", "CHANCTL_STATE_DIR", "-u", "XDG_RUNTIME_DIR"]
        let asUser = user.map { ["setpriv", "--reuid=\($0)", "--regid=\($0)", "--clear-groups", "--"] } ?? []
        return try Binaries.run("/usr/bin/env", drop + asUser + arguments)
    }

    @Test("as root: /var/lib/secure-channel, with no notice; --state-dir and CHANCTL_STATE_DIR still choose",
          .enabled(if: getuid() == 0, "runs as root only (the unprivileged case is the other test)"))
    func root() throws {
        let status = try run([try Binaries.chanctl, "sim", "status"])
        #expect(status.status == 1)
        #expect(status.stderr.contains("/var/lib/secure-channel/sim.sock"), "\(status.stderr)")
        #expect(!status.stderr.contains("the default for a user other than root"), "\(status.stderr)")

        let tmp = try TemporaryDirectory()
        let key = tmp.path + "/a.key"
        #expect(try Binaries.run(Binaries.guestAgent, ["keygen", "--out", key]).status == 0)
        let agent = try run([try Binaries.guestAgent, "ping", "--channel", "c", "--domain", "a", "--key", key,
                             "--host-key", Binaries.someHostKey])
        #expect(agent.status == 1)
        #expect(agent.stderr.contains("/var/lib/secure-channel"), "\(agent.stderr)")

        let explicit = try run([try Binaries.chanctl, "sim", "status", "--state-dir", tmp.path + "/mine"])
        #expect(explicit.stderr.contains(tmp.path + "/mine/sim.sock") && !explicit.stderr.contains("/var/lib"), "\(explicit.stderr)")
        let fromEnvironment = try Binaries.run(Binaries.chanctl, ["sim", "status"], environment: ["CHANCTL_STATE_DIR": tmp.path + "/env"])
        #expect(fromEnvironment.stderr.contains(tmp.path + "/env/sim.sock"), "\(fromEnvironment.stderr)")
    }

    @Test("as another user: the per-user temporary directory, said once on standard error; --state-dir silences it")
    func unprivileged() throws {
        let uid = getuid() == 0 ? 65534 : Int(getuid())
        let asUser: Int? = getuid() == 0 ? uid : nil
        if asUser != nil {
            try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "setpriv (util-linux) runs the command as another user")
        }
        let status = try run([try Binaries.chanctl, "sim", "status"], user: asUser)
        #expect(status.status == 1, "\(status.stderr)")
        let directory = "/tmp/secure-channel-\(uid)"
        let notice = "chanctl: state directory \(directory): the default for a user other than root"
        #expect(status.stderr.components(separatedBy: notice).count == 2, "the notice, once: \(status.stderr)")
        #expect(status.stderr.contains("\(directory)/sim.sock"), "\(status.stderr)")

        let explicit = try run([try Binaries.chanctl, "sim", "status", "--state-dir", "/tmp/secure-channel-nowhere-\(uid)"], user: asUser)
        #expect(!explicit.stderr.contains("the default for a user other than root"), "\(explicit.stderr)")
    }
}
