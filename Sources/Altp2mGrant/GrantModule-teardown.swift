import Altp2m
import ChannelCrypto

extension GrantModule {
    // MARK: Public operations

    /// Destroys a channel: the agents are told (the control page's host line
    /// says `closed`, reason `revoked`, and sleepers are woken), the
    /// descriptors revoked, each window reverted, the backing gfns' access
    /// restored, the frames scrubbed with zeros and released, and a channel
    /// view that carries no other channel destroyed (after every vCPU is
    /// moved back to view 0), with the #VE pages and altp2m state the grant
    /// module added. Then the registry entry is removed.
    ///
    /// Hypervisor calls that fail along the way do not stop the teardown;
    /// they are listed in the result.
    /// - Throws: ``GrantError/noSuchChannel(_:)``; ``GrantError/registry(_:)``
    ///   if the registry cannot be updated (the hypervisor side is torn down
    ///   by then, and destroying the channel again is safe).
    @discardableResult
    public func destroyChannel(_ name: String) throws(GrantError) -> ChannelTeardown {
        let known = registry.contents.channels[name]
        return try audited(.channelDestroy, channel: name, domains: known.map { $0.sides.map(\.domainName) },
                           details: nil, resolved: { _ in (nil, known?.generation) }) { () throws(GrantError) in
            try tearDownChannel(name)
        }
    }

    private func tearDownChannel(_ name: String) throws(GrantError) -> ChannelTeardown {
        guard let channel = registry.contents.channels[name] else { throw .noSuchChannel(name) }
        var remaining: [DomainID: [ChannelState]] = [:]
        var retire: [DomainID: DomainState] = [:]
        for side in channel.sides {
            let rest = registry.contents.channels(of: side.domain).filter { $0.name != name }
            if rest.isEmpty {
                retire[side.domain] = registry.contents.domains[side.domain]
            } else {
                remaining[side.domain] = rest
            }
        }
        var parked = registry.contents.parked
        let others = registry.contents.channels.values.filter { $0.name != name }
        var notes: [String] = []
        let problems = dismantle(channel, closing: .revoked, remaining: remaining, retire: retire, parked: &parked,
                                 notes: &notes, channelsOf: { id in others.filter { $0.involves(id) }.count })
        do {
            try registry.commit { contents in
                contents.channels[name] = nil
                for domain in retire.keys { contents.domains[domain] = nil }
                contents.parked = parked
            }
        } catch {
            throw .registry("the channel '\(name)' was torn down, but the registry could not be updated (\(error)); it stays listed until the registry can be written, and destroying it again is safe")
        }
        return ChannelTeardown(name: name, problems: problems, notes: notes)
    }

    /// Tears down every channel of a domain that died, telling each peer
    /// (host line `closed`, reason initiator or responder died, and a wake-up)
    /// before its window goes away.
    /// - Returns: one teardown report per channel.
    /// - Throws: ``GrantError/registry(_:)`` if the registry cannot be updated.
    @discardableResult
    public func domainDied(_ reference: DomainReference) throws(GrantError) -> [ChannelTeardown] {
        // The domain may be gone from the hypervisor: look it up in the registry.
        let known = registry.contents.channels.values.flatMap(\.sides)
        let match: SideState?
        switch reference {
        case .id(let id):
            match = known.first { $0.domain == id }
        case .name(let name):
            let digits = name.hasPrefix("d") ? String(name.dropFirst()) : name
            match = known.first { $0.domainName == name }
                ?? UInt16(digits).flatMap { raw in known.first { $0.domain.rawValue == raw } }
        }
        guard let match else { return [] }
        return try domainDied(match.domain)
    }

    /// Tears down every channel of the domain with id `domain`, as the
    /// variant that takes a ``DomainReference`` does.
    @discardableResult
    public func domainDied(_ domain: DomainID) throws(GrantError) -> [ChannelTeardown] {
        let channels = registry.contents.channels(of: domain)
        func record(_ error: String?) {
            for channel in channels {
                let reason = channel.initiator.domain == domain ? "initiator died" : "responder died"
                audit(.channelTeardown, channel: channel.name, domains: channel.sides.map(\.domainName),
                      details: ["reason": reason], generation: channel.generation, error: error)
            }
        }
        do {
            let reports = try tearDownChannels(of: domain)
            record(nil)
            return reports
        } catch {
            record(error.description)
            throw error
        }
    }

    private func tearDownChannels(of domain: DomainID) throws(GrantError) -> [ChannelTeardown] {
        var left = registry.contents
        var reports: [ChannelTeardown] = []
        let channels = left.channels(of: domain)
        for (position, channel) in channels.enumerated() {
            let reason: ChannelCloseReason = channel.initiator.domain == domain ? .initiatorDied : .responderDied
            var remaining: [DomainID: [ChannelState]] = [:]
            var retire: [DomainID: DomainState] = [:]
            for side in channel.sides {
                if side.domain == domain {
                    // The dead domain is retired with its last channel; its
                    // other channels go next, so nothing is re-applied to it.
                    if position == channels.count - 1 { retire[domain] = left.domains[domain] }
                    continue
                }
                let rest = left.channels(of: side.domain).filter { $0.name != channel.name }
                if rest.isEmpty { retire[side.domain] = left.domains[side.domain] } else { remaining[side.domain] = rest }
            }
            var parked = left.parked
            let others = left.channels.values.filter { $0.name != channel.name }
            var notes: [String] = []
            let problems = dismantle(channel, closing: reason, remaining: remaining, retire: retire, parked: &parked,
                                     notes: &notes, channelsOf: { id in others.filter { $0.involves(id) }.count })
            left.parked = parked
            left.channels[channel.name] = nil
            for retired in retire.keys { left.domains[retired] = nil }
            reports.append(ChannelTeardown(name: channel.name, problems: problems, notes: notes))
        }
        left.domains[domain] = nil
        let final = left
        do {
            try registry.commit { $0 = final }
        } catch {
            throw .registry("the channels of \(domain) were torn down, but the registry could not be updated (\(error)); they stay listed until it can be written, and destroying them again is safe")
        }
        return reports
    }

    /// Issues fresh descriptors for a channel: a new pre-shared key, the
    /// next generation, a new expiry. Both agents must open the new ones
    /// (an agent refuses the old ones once it accepted a newer generation).
    /// - Parameter lifetime: seconds the new descriptors are valid.
    /// - Returns: the channel with its new generation and expiry.
    @discardableResult
    public func reissueDescriptors(_ name: String, lifetime: UInt64 = 3600) throws(GrantError) -> ChannelSummary {
        let known = registry.contents.channels[name]
        return try audited(.channelReissue, channel: name, domains: known.map { $0.sides.map(\.domainName) },
                           details: ["lifetime_s": "\(lifetime)"], resolved: { (nil, $0.generation) }) { () throws(GrantError) in
            try issueDescriptorsAgain(name, lifetime: lifetime)
        }
    }

    private func issueDescriptorsAgain(_ name: String, lifetime: UInt64) throws(GrantError) -> ChannelSummary {
        guard var channel = registry.contents.channels[name] else { throw .noSuchChannel(name) }
        guard lifetime >= 1 else { throw .invalidArgument("the descriptor lifetime must be at least one second") }
        var agentKeys: [Curve25519.KeyAgreement.PublicKey] = []
        for side in channel.sides {
            guard let key = keys.agents[side.domainName] else {
                throw .keys("no agent key is registered for \(side.domainName); run: chanctl keys register \(side.domainName) <agent-public-key-hex>")
            }
            agentKeys.append(key)
        }
        let now = clock()
        // Committed before anything is published: if publishing or the
        // final commit fails, the next re-issue takes a newer generation
        // instead of publishing this one again.
        channel.generation = try registry.reserveGeneration()
        channel.expiresAt = now + lifetime
        channel.reissuedAt = now
        var pages: [DomainID: [VCPUID: GFN]] = [:]
        for side in channel.sides { pages[side.domain] = registry.contents.domains[side.domain]?.notifyPages ?? [:] }
        let envelopes: [[UInt8]]
        do {
            envelopes = try sealDescriptors(channel, agentKeys: agentKeys, notifyPages: pages, issuedAt: now)
            for (side, envelope) in zip(channel.sides, envelopes) {
                try during(.publish, "publishing the descriptor for \(side.domainName) (\(side.domain))") {
                    () throws(XenErrno) in try host.publishDescriptor(envelope, for: side.domain, name: name)
                }
            }
        } catch {
            if let errno = error.errno { throw .hypervisor(errno, error.detail) }
            throw .keys("\(error.detail): \(error.cause)")
        }
        let updated = channel
        try registry.commit { contents in
            contents.channels[name] = updated
            contents.nextGeneration = max(contents.nextGeneration, updated.generation + 1)
        }
        announceGeneration(updated)
        return summary(updated)
    }

    /// Applies a channel's lock-out and remap again, in every view that now
    /// exists: for views created after the channel (on Xen 4.19 and later a
    /// new view copies its own default access, so the host's `n` does not
    /// reach it; ``showChannel(_:)`` reports such a view), or after something
    /// outside the grant module changed the views.
    /// - Returns: what could not be re-applied (empty when all is well).
    @discardableResult
    public func repairChannel(_ name: String) throws(GrantError) -> [String] {
        guard let channel = registry.contents.channels[name] else { throw .noSuchChannel(name) }
        var problems: [String] = []
        for side in channel.sides where side.applied {
            do {
                try host.pauseDomain(side.domain)
            } catch {
                problems.append("\(side.domainName) (\(side.domain)): pausing: \(error)")
                continue
            }
            do {
                try applyWindow(side, pageCount: channel.pageCount)
            } catch {
                problems.append(error.detail)
            }
            note(&problems, "\(side.domainName) (\(side.domain)): unpausing") { () throws(XenErrno) in
                try host.unpauseDomain(side.domain)
            }
        }
        return problems
    }

    // MARK: Undo and teardown

    /// Undoes a failed creation: everything `work` records, and the domain
    /// state made in this call.
    func undo(_ work: ChannelState, _ domains: [DomainWork], notes: inout [String]) -> [String] {
        var remaining: [DomainID: [ChannelState]] = [:]
        var retire: [DomainID: DomainState] = [:]
        for domain in domains {
            if domain.isNew {
                retire[domain.state.domain] = domain.state
            } else {
                remaining[domain.state.domain] = registry.contents.channels(of: domain.state.domain)
            }
        }
        var parked = registry.contents.parked
        let others = Array(registry.contents.channels.values)
        var problems = dismantle(work, closing: nil, remaining: remaining, retire: retire, parked: &parked,
                                 notes: &notes, channelsOf: { id in others.filter { $0.involves(id) }.count })
        if parked != registry.contents.parked {
            do {
                try registry.commit { $0.parked = parked }
            } catch {
                problems.append("recording the parked frames of '\(work.name)': \(error)")
            }
        }
        for domain in domains where !domain.isNew {
            let who = "\(domain.state.name) (\(domain.state.domain))"
            for (vcpu, page) in domain.notifyEnabledNow.sorted(by: { $0.key < $1.key }) {
                note(&problems, "\(who): vcpu_disable_notify(\(vcpu))") { () throws(XenErrno) in
                    try host.vcpuDisableNotify(domain.state.domain, vcpu: vcpu)
                }
                note(&problems, "\(who): releasing the #VE page \(page)") { () throws(XenErrno) in
                    try host.releaseVEInfoPage(domain.state.domain, gfn: page)
                }
            }
        }
        return problems
    }

    /// Takes a channel apart, in the order that never exposes its contents:
    /// tell the agents, revoke the descriptors, revert the windows, scrub the
    /// frames, then release the frames (with their backing gfns' access), or
    /// park them, and release windows and port. Then, per domain: re-apply
    /// its remaining channels if frames were released, or retire its channel
    /// view if none remain.
    ///
    /// Frames are parked (``ParkedFrames``: scrubbed, still locked out,
    /// still shared) while a domain holding them keeps other channels:
    /// releasing them drops backing gfns, and a drop inside the remapped range
    /// of the domain's one channel view resets the view (spec §5.3), which on
    /// Xen cannot be repaired for grant-mapped backing
    /// (`altp2m_get_effective_entry` refuses a `p2m_grant_map_rw` entry the
    /// view lacks). So the other channels never lose their windows, and
    /// nothing is re-applied: a destroy costs the same whatever the number of
    /// channels left. Parked frames of `parked` whose domains have no channel
    /// left (`channelsOf`, the channels other than this one) go here, before
    /// the views are retired. What was left as it is on purpose goes to
    /// `notes` (``ChannelTeardown/notes``).
    func dismantle(_ channel: ChannelState, closing: ChannelCloseReason?,
                   remaining: [DomainID: [ChannelState]], retire: [DomainID: DomainState],
                   parked: inout [ParkedFrames], notes: inout [String], channelsOf: (DomainID) -> Int) -> [String] {
        var problems: [String] = []
        let domainIDs = channel.sides.map(\.domain)
        // If the domain list cannot be read, try everything and report what fails.
        let alive = (try? host.listDomains()).map { Set($0.map(\.id)) } ?? Set(domainIDs)
        let live = channel.sides.filter { alive.contains($0.domain) }
        let keeps = { (domain: DomainID) in alive.contains(domain) && !(remaining[domain] ?? []).isEmpty }
        // Parked while a domain whose view the release would reset for good keeps channels.
        let park = channel.frames.map { frames in
            domainIDs.contains { keeps($0) && host.releaseEffect(on: $0, of: frames) == .unrepairableReset }
        } ?? false

        var paused: [DomainID] = []
        for domain in domainIDs where alive.contains(domain) && !(remaining[domain] ?? []).isEmpty {
            do {
                try host.pauseDomain(domain)
                paused.append(domain)
            } catch {
                problems.append("\(domain): pausing during the teardown: \(error)")
            }
        }

        if let reason = closing, channel.controlPageWritten {
            tellAgents(channel, reason: reason, live: live, problems: &problems)
        }
        for domain in channel.published {
            do {
                try host.revokeDescriptor(for: domain, name: channel.name)
            } catch where alive.contains(domain) {
                problems.append("\(domain): revoking the descriptor '\(channel.name)': \(error)")
            } catch {}
        }
        for side in live where side.applied {
            revertWindowGFNs(side, pageCount: channel.pageCount, problems: &problems)
        }
        if let frames = channel.frames {
            scrub(frames, live: live, problems: &problems)
        }
        if let frames = channel.frames, park {
            parked.append(ParkedFrames(channel: channel.name, pageCount: channel.pageCount, frames: frames,
                                       sides: channel.sides))
        } else {
            for side in live where side.applied {
                revertBackingGFNs(side, pageCount: channel.pageCount, problems: &problems)
            }
            if let frames = channel.frames {
                note(&problems, "releasing the shared frames of '\(channel.name)'") { () throws(XenErrno) in
                    try host.releaseSharedFrames(frames)
                }
            }
        }
        for side in live {
            guard let first = side.windowFirstGFN else { continue }
            note(&problems, "\(side.domainName) (\(side.domain)): releasing the window \(first)+\(channel.pageCount)") {
                () throws(XenErrno) in try host.releaseWindow(side.domain, firstGFN: first, pageCount: channel.pageCount)
            }
        }
        if let port = channel.port {
            let owner = channel.initiator.domain
            do {
                try host.releaseNotificationPort(owner, port: port)
            } catch where alive.contains(owner) {
                problems.append("\(owner): releasing notification port \(port): \(error)")
            } catch {}
        }
        releaseIdle(&parked, alive: alive, channelsOf: channelsOf, problems: &problems)
        var seen: Set<DomainID> = []
        for domain in domainIDs where alive.contains(domain) && seen.insert(domain).inserted {
            if let rest = remaining[domain], !rest.isEmpty {
                // Re-applied where the release reset the view, repairably
                // (or no frames were reached, as before): a view the release
                // left alone keeps its channels as they are.
                let effect = channel.frames.map { host.releaseEffect(on: domain, of: $0) }
                guard !park, effect == nil || effect == .repairableReset else { continue }
                for other in rest {
                    guard let side = other.side(of: domain), side.applied else { continue }
                    do {
                        try applyWindow(side, pageCount: other.pageCount)
                    } catch {
                        problems.append("re-applying channel '\(other.name)' in \(side.domainName) (\(domain)): \(error.detail)")
                    }
                }
            } else if let state = retire[domain] {
                retireDomain(state, problems: &problems, notes: &notes)
            }
        }
        for domain in paused {
            note(&problems, "\(domain): unpausing after the teardown") { () throws(XenErrno) in
                try host.unpauseDomain(domain)
            }
        }
        return problems
    }

    /// Releases the parked frames whose domains have no channel left: their
    /// backing gfns' access is restored (the views are still there to drop
    /// their entries from), then the frames go.
    func releaseIdle(_ parked: inout [ParkedFrames], alive: Set<DomainID>, channelsOf: (DomainID) -> Int,
                     problems: inout [String]) {
        var kept: [ParkedFrames] = []
        for entry in parked {
            let frames = entry.frames
            let resetsForGood = { (domain: DomainID) in self.host.releaseEffect(on: domain, of: frames) == .unrepairableReset }
            guard entry.isIdle(alive: alive, channelsOf: { resetsForGood($0) ? channelsOf($0) : 0 }) else {
                kept.append(entry)
                continue
            }
            for side in entry.sides where side.applied && alive.contains(side.domain) {
                revertBackingGFNs(side, pageCount: entry.pageCount, problems: &problems)
            }
            note(&problems, "releasing the parked frames of '\(entry.channel)'") { () throws(XenErrno) in
                try host.releaseSharedFrames(entry.frames)
            }
        }
        parked = kept
    }

    /// Writes the host line of the control page (`reason`, then `closed` =
    /// 1, each 32-bit little-endian) and wakes every word an agent may sleep
    /// on: the four ring indices and the host's `closed`.
    ///
    /// The line goes into the shared first frame, for an agent in the middle
    /// of a ring operation, and into the first page each window shows once
    /// its remap is reverted (the window gfn's own frame), so an agent that
    /// looks after the teardown reads `closed` and the reason there instead
    /// of a page of zeros.
    private func tellAgents(_ channel: ChannelState, reason: ChannelCloseReason, live: [SideState],
                            problems: inout [String]) {
        var pages: [(SideState, GFN)] = []
        if let side = live.first(where: { !$0.backing.isEmpty }) { pages.append((side, side.backing[0])) }
        for side in live { if let first = side.windowFirstGFN { pages.append((side, first)) } }
        let base = ControlPage.Offset.hostState
        for (side, gfn) in pages {
            let who = "\(side.domainName) (\(side.domain))"
            note(&problems, "\(who): writing the close reason at \(gfn)") { () throws(XenErrno) in
                try host.writeGuestMemory(side.domain, gfn: gfn, offset: base + ControlPage.HostField.reason,
                                          bytes: littleEndianBytes(reason.rawValue))
            }
            note(&problems, "\(who): setting the host's closed flag at \(gfn)") { () throws(XenErrno) in
                try host.writeGuestMemory(side.domain, gfn: gfn, offset: base + ControlPage.HostField.closed,
                                          bytes: littleEndianBytes(UInt32(1)))
            }
        }
        let words = [ControlPage.Offset.ring0Producer, ControlPage.Offset.ring0Consumer,
                     ControlPage.Offset.ring1Producer, ControlPage.Offset.ring1Consumer,
                     base + ControlPage.HostField.closed]
        for reader in live where !reader.backing.isEmpty {
            for offset in words {
                host.wake(reader.domain, gfn: reader.backing[0], offset: offset, port: channel.port ?? 0)
            }
        }
    }

    /// Overwrites every shared frame with zeros through a domain that still
    /// maps it, before any view could expose it again.
    private func scrub(_ frames: SharedFrames, live: [SideState], problems: inout [String]) {
        guard let side = live.first(where: { !$0.backing.isEmpty }) else { return }
        let zeros = [UInt8](repeating: 0, count: RingGeometry.pageSize)
        for gfn in side.backing {
            note(&problems, "\(side.domainName) (\(side.domain)): scrubbing the frame at \(gfn)") { () throws(XenErrno) in
                try host.writeGuestMemory(side.domain, gfn: gfn, offset: 0, bytes: zeros)
            }
        }
    }
}

extension StepFailure {
    /// The hypervisor's error number, if the hypervisor caused the failure.
    var errno: XenErrno? {
        if case .hypervisor(let errno) = cause { return errno }
        return nil
    }
}

/// A 32-bit value as its four little-endian bytes.
func littleEndianBytes(_ value: UInt32) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

/// A 64-bit value as its eight little-endian bytes.
func littleEndianBytes(_ value: UInt64) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}
