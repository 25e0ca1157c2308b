import Altp2m
import ArgumentParser
import ChannelCrypto
import Foundation
import Logging
import Altp2mSim
import SecureChannel
import Synchronization

/// `guest-agent run`: serves echo on every channel published for the domain.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve echo on every channel published for this domain (one thread per channel).",
        discussion: """
            Polls the descriptors published for the domain, opens each new channel on a \
            thread of its own (attached as its own vCPU) and sends every message back. \
            A peer that goes away (closes, dies, or the channel is destroyed) is logged \
            and its channel dropped; the agent keeps running until killed.
            """)

    @OptionGroup var agent: AgentOptions

    @Option(help: "How to wait for messages: spin (a busy core per channel), block or adaptive.")
    var wait: WaitArgument = .adaptive

    @Option(name: .customLong("poll-ms"), help: "How often to look for new descriptors, in milliseconds.")
    var pollMilliseconds: Int = 50

    @Option(name: .customLong("handshake-timeout"), help: "Seconds to wait for the peer's handshake.")
    var handshakeTimeout: Double = 30

    func validate() throws {
        guard (1...10_000).contains(pollMilliseconds) else { throw ValidationError("bad --poll-ms \(pollMilliseconds): expected 1...10000") }
    }

    func run() throws {
        let log = agent.logger("guest-agent.run")
        let agentKey = try agent.agentKey()  // a bad key fails before anything attaches
        let hostKey = try agent.hostPublicKey()
        let watcher = try agent.platform(vcpu: 0)
        let vcpuCount = (watcher as? SimPlatformInfo)?.vcpuCount ?? 1
        log.info("agent running", metadata: ["wait": "\(wait.rawValue)", "vcpus": "\(vcpuCount)"])

        let served = ServedTable()
        var nextVCPU: UInt32 = 0
        var failingSince: UInt64? = nil
        while true {
            let names: [String]
            do {
                names = try watcher.descriptorNames()
                failingSince = nil
            } catch {
                let now = monotonicNanoseconds()
                if failingSince == nil { failingSince = now; log.warning("cannot list descriptors: \(error)") }
                if now - failingSince! > 3_000_000_000 {
                    throw AgentFailure.failure("lost the hypervisor: \(error); restart the agent once the simulator (chanctl sim start) or Xen is back")
                }
                usleep(UInt32(pollMilliseconds) * 1000)
                continue
            }
            var toStart: [(String, [UInt8])] = []
            let current = served.table.withLock { $0 }
            for name in names {
                if let entry = current[name], !entry.finished { continue }
                guard let envelope = try? watcher.readDescriptor(named: name) else { continue }
                if let entry = current[name], entry.envelope == envelope { continue }  // finished, same descriptor
                toStart.append((name, envelope))
            }
            served.table.withLock { table in
                for name in table.keys where !names.contains(name) && table[name]!.finished { table[name] = nil }
                for (name, envelope) in toStart { table[name] = Served(envelope: envelope, finished: false) }
            }
            for (name, envelope) in toStart {
                let vcpu = nextVCPU % UInt32(max(1, vcpuCount))
                nextVCPU &+= 1
                let job = EchoJob(name: name, envelope: envelope, spec: agent.spec, agentKey: agentKey, hostKey: hostKey, vcpu: vcpu, wait: wait.strategy,
                                  handshakeTimeout: handshakeTimeout, log: log)
                let thread = Thread {
                    job.serve()
                    served.table.withLock { $0[name]?.finished = true }
                }
                thread.name = "echo-\(name)"
                thread.start()
            }
            usleep(UInt32(pollMilliseconds) * 1000)
        }
    }

}

struct Served: Sendable {
    var envelope: [UInt8]
    var finished: Bool
}

/// The channels being (or done being) served, by name.
final class ServedTable: Sendable {
    let table = Mutex<[String: Served]>([:])
}

/// What the simulator platform can tell about its domain.
protocol SimPlatformInfo { var vcpuCount: Int { get } }

extension SimGuestPlatform: SimPlatformInfo {
    var vcpuCount: Int { guest.vcpuCount }
}

/// One channel served on its own thread.
struct EchoJob: Sendable {
    let name: String
    let envelope: [UInt8]
    let spec: PlatformSpec
    let agentKey: Curve25519.KeyAgreement.PrivateKey
    let hostKey: Curve25519.Signing.PublicKey
    let vcpu: UInt32
    let wait: WaitStrategy
    let handshakeTimeout: Double
    let log: Logger

    func serve() {
        var log = self.log
        log[metadataKey: "channel"] = "\(name)"
        let platform: GuestPlatform
        let channel: SecureChannel
        do {
            platform = try spec.platform(vcpu: vcpu)
            channel = try SecureChannel.open(descriptor: envelope, agentKey: agentKey,
                                             hostKey: hostKey, platform: platform,
                                             options: .init(wait: wait, handshakeTimeout: .seconds(handshakeTimeout)))
        } catch let failure as AgentFailure {
            log.error("cannot serve: \(failure)")
            return
        } catch let error as ChannelError {
            log.error("cannot open: \(error)\(fixHint(error))")
            return
        } catch {
            log.error("cannot open: \(error)")
            return
        }
        log.info("channel open", metadata: ["vcpu": "\(vcpu)", "mode": "\(channel.descriptor.mode)",
                                            "suite": "\(channel.descriptor.suite)"])
        let capacity = channel.maximumMessageBytes
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var messages: UInt64 = 0
        while true {
            do {
                let n: Int
                do {
                    n = try channel.receive(into: buffer, timeout: .seconds(1))
                } catch .timeout {
                    continue
                }
                try channel.send(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                messages += 1
            } catch .peerClosed {
                log.info("peer closed the channel; dropping it", metadata: ["messages": "\(messages)"])
                try? channel.close(timeout: .seconds(1))
                return
            } catch {
                log.warning("peer went away: \(error); dropping the channel", metadata: ["messages": "\(messages)"])
                return
            }
        }
    }
}
