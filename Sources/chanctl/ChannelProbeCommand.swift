import Altp2m
import Altp2mSim
import ArgumentParser
import ChannelCrypto
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// `chanctl sim channel-probe DOM` (hidden): a channel agent for tests. It
/// attaches as vCPU 0 of DOM through ``SimGuestPlatform``, makes a fresh
/// X25519 key pair and prints `{"ok":true,"public_key":HEX,...}`; register
/// that key with `chanctl keys register DOM HEX` before the channel is
/// created. Then one command per line on standard input, one JSON line back:
///
///     names                         descriptor names published for DOM
///     enter VIEW                    enterView (local VMFUNC): {"ok":true,"entered":BOOL}
///     open HOSTKEY NAME [block]     open the channel (waits for the peer)
///     send TEXT                     send a message
///     recv [MS]                     receive one message (default 5000 ms)
///     echo [MS]                     receive one message and send it back
///     close                         close this side
///     exit                          exit without detaching (the domain crashes)
///
/// A failed receive answers `{"ok":false,"kind":"peer_died"|"peer_closed"|
/// "timeout"|...,"error":...,"at_ms":MONOTONIC}`.
struct ChannelProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channel-probe",
        abstract: "Run a scripted channel agent attached to DOM (commands on standard input).",
        shouldDisplay: false)

    @OptionGroup var options: GlobalOptions
    @Argument(help: "The domain (name).") var domain: String

    func run() throws {
        let platform: SimGuestPlatform
        do {
            platform = try SimGuestPlatform.attach(domain: domain, stateDirectory: options.stateDirectory.path)
        } catch {
            throw CommandFailure.failure(error.description)
        }
        let key = Curve25519.KeyAgreement.PrivateKey()
        reply(["ok": true, "domid": .int(Int64(platform.domain.rawValue)), "pid": .int(Int64(getpid())),
               "public_key": .string(key.publicKey.hex)])
        var channel: SecureChannel?
        // In memory, for the probe's life: the probe is a scripted agent with
        // a key made for this run, so nothing it accepts can come back later.
        var replayGuard = DescriptorReplayGuard()
        while let line = readLine() {
            let words = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true).map(String.init)
            guard let command = words.first else { continue }
            switch command {
            case "names":
                do { reply(["ok": true, "names": .array(try platform.descriptorNames().map { .string($0) })]) } catch {
                    reply(["ok": false, "error": .string(error.description)])
                }
            case "enter" where words.count == 2:
                guard let view = UInt16(words[1]) else { reply(["ok": false, "error": "bad view"]); continue }
                reply(["ok": true, "entered": .bool(platform.enterView(ViewID(view)))])
            case "open" where words.count >= 3:
                do {
                    let hostKey = try Curve25519.Signing.PublicKey(rawRepresentation: try Hex.decode(words[1]))
                    let envelope = try platform.readDescriptor(named: words[2])
                    let wait: WaitStrategy = words.count > 3 && words[3] == "block" ? .block : .adaptive(spinFor: .microseconds(20))
                    channel = try SecureChannel.open(channel: words[2], descriptor: envelope, agentKey: key, hostKey: hostKey,
                                                     platform: platform, options: .init(wait: wait), replayGuard: &replayGuard)
                    reply(["ok": true, "opened": .string(words[2])])
                } catch {
                    reply(failure(error))
                }
            case "send" where words.count >= 2:
                guard let channel else { reply(["ok": false, "error": "not open"]); continue }
                do {
                    try channel.send(Array(words.dropFirst().joined(separator: " ").utf8), timeout: .seconds(5))
                    reply(["ok": true])
                } catch {
                    reply(failure(error))
                }
            case "recv", "echo":
                guard let channel else { reply(["ok": false, "error": "not open"]); continue }
                let ms = words.count > 1 ? Int64(words[1]) ?? 5000 : 5000
                do {
                    let bytes = try channel.receive(timeout: .milliseconds(ms))
                    if command == "echo" { try channel.send(bytes, timeout: .seconds(5)) }
                    reply(["ok": true, "text": .string(String(decoding: bytes, as: UTF8.self))])
                } catch {
                    reply(failure(error))
                }
            case "close":
                do { try channel?.close(); reply(["ok": true]) } catch { reply(failure(error)) }
            case "exit":
                Glibc.exit(0)
            default:
                reply(["ok": false, "error": .string("unknown command: \(line)")])
            }
        }
    }

    private func failure(_ error: any Error) -> JSONValue {
        var kind = "other"
        if let channelError = error as? ChannelError {
            switch channelError {
            case .peerDied: kind = "peer_died"
            case .peerClosed: kind = "peer_closed"
            case .timeout: kind = "timeout"
            case .descriptorRejected: kind = "descriptor_rejected"
            default: kind = "channel"
            }
        }
        return ["ok": false, "kind": .string(kind), "error": .string("\(error)"),
                "at_ms": .uint(Self.monotonicMilliseconds())]
    }

    static func monotonicMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    private func reply(_ value: JSONValue) {
        let line = Array((value.serialized + "\n").utf8)
        _ = line.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
    }
}
