import AgentPlatform
import AgentReplayGuard
import Altp2m
import Altp2mSim
import CPlatform
import CSecureChannelABI
import SecureChannel
import XenGuest
#if canImport(Glibc)
import Glibc
#endif

/// sc_open's steps, as guest-agent takes them: attach, wait for the
/// descriptor, check it against the domain's replay guard file (the one
/// guest-agent uses, so C agents and Swift agents of a domain share it),
/// then map the window and run the handshake.
struct ChannelOpener {
    let request: OpenRequest

    func open() throws(ABIError) -> SecureChannel {
        let platform = try attach()
        let started = cplatform_monotonic_ns()
        let envelope = try waitForDescriptor(platform)
        let opened = try accept(envelope, platform: platform)
        // What is left of the timeout goes to the handshake.
        let elapsedMilliseconds = Int((cplatform_monotonic_ns() - started) / 1_000_000)
        let handshake: Duration = request.timeoutMilliseconds.map { .milliseconds(max(0, $0 - elapsedMilliseconds)) }
            ?? .seconds(100 * 365 * 24 * 3600)  // "indefinitely"
        do {
            return try SecureChannel.open(opened, platform: platform,
                                          options: .init(wait: request.wait, handshakeTimeout: handshake))
        } catch .timeout {
            throw ABIError(SC_ETIMEDOUT, "sc_open: channel \(request.channel): the peer agent did not open its end in time; start its agent (guest-agent run, or a program calling sc_open) in the peer domain, or raise timeout_ms")
        } catch {
            throw ABIError(error, context: "sc_open: channel \(request.channel)")
        }
    }

    /// This guest on the chosen backend: vCPU 0 of the simulator domain
    /// (software enforcement: the window is plain shared memory, which the
    /// library touches only inside the channel view), or the Xen guest.
    private func attach() throws(ABIError) -> GuestPlatform {
        do {
            return try request.backend.attach(domain: request.domain ?? "", stateDirectory: request.stateDir,
                                              option: "the backend")
        } catch {
            throw .platform("sc_open: \(error)")
        }
    }

    /// Polls the descriptor store until `request.channel` is published for
    /// this domain or the timeout passes.
    private func waitForDescriptor(_ platform: GuestPlatform) throws(ABIError) -> [UInt8] {
        let deadline = request.timeoutMilliseconds.map { cplatform_monotonic_ns() + UInt64($0) * 1_000_000 }
        while true {
            do {
                return try platform.readDescriptor(named: request.channel)
            } catch .noDescriptor {
                // not yet
            } catch {
                throw .platform("sc_open: cannot read the descriptor of \(request.channel): \(error)")
            }
            if let deadline, cplatform_monotonic_ns() >= deadline {
                let names = (try? platform.descriptorNames()) ?? []
                let published = names.isEmpty ? "none" : names.sorted().joined(separator: ", ")
                throw .descriptor("sc_open: no channel named '\(request.channel)' is published for this domain (published: \(published)); create it with chanctl channel create \(request.channel) --between \(request.domain ?? "DOMAIN") PEER")
            }
            usleep(20_000)
        }
    }

    /// Checks the envelope and records it in the domain's replay guard.
    private func accept(_ envelope: [UInt8], platform: GuestPlatform) throws(ABIError) -> OpenedDescriptor {
        let file = ReplayGuardFile(directory: ReplayGuardFile.directory(onSimulator: request.backend.isSimulated, stateDir: request.stateDir),
                                   domain: platform.domain)
        let opener = DescriptorOpener(hostKey: request.hostKey, agentKey: request.agentKey, domain: platform.domain)
        let result: Result<OpenedDescriptor, DescriptorError>
        do {
            result = try file.open(envelope, named: request.channel, with: opener)
        } catch {
            throw .platform("sc_open: \(error.description)")
        }
        switch result {
        case .success(let opened):
            return opened
        case .failure(let refusal):
            throw .descriptor("sc_open: channel \(request.channel): descriptor rejected: \(refusal)\(hint(refusal))")
        }
    }

    private func hint(_ refusal: DescriptorError) -> String {
        switch refusal {
        case .badSignature:
            "; host_key_hex is not this host's key (compare with chanctl keys show), or the envelope was altered between dom0 and this agent: then do not use this channel, destroy and re-create it"
        case .notForThisKey, .malformed, .wrongRecipient, .unsupportedVersion:
            "; check that key_file (\(request.keyFile)) is the key registered for this domain (chanctl keys register) and host_key_hex is chanctl keys show's public_key"
        case .nameMismatch, .replayed, .expired:
            ""  // the description says what happened and what to do
        }
    }
}
