import Altp2m

extension GrantModule {
    /// An agent process of `domain` went away (it exited, was killed, or
    /// left its domain) while the domain keeps running. Its channels stay:
    /// the domain is alive, and a restarted agent finds its descriptor and
    /// its window again. But the peer must not wait forever for a process
    /// that is gone, so for every channel whose window the process had
    /// mapped the host increments that side's process-exit count in the
    /// control page (``ControlPage/HostField/processExits(of:)``) and wakes
    /// every word the peer may sleep on. The peer's endpoint compares the
    /// count with the one it read at open and ends its session with
    /// `peerDied` once it has received what the process sent before it went.
    ///
    /// - Parameters:
    ///   - domain: the domain the process ran in.
    ///   - mapped: the gfn ranges the process mapped (`guest.window`): the
    ///     channels whose window overlaps one of them are the process's.
    /// - Returns: the names of the channels whose peers were told.
    /// - Throws: ``GrantError/registry(_:)`` if the count cannot be recorded
    ///   (nothing was written to the control page then; the peer still
    ///   learns through its liveness timeout if it set one).
    @discardableResult
    public func agentProcessExited(_ domain: DomainID,
                                   mapped: [(firstGFN: GFN, pageCount: Int)]) throws(GrantError) -> [String] {
        var contents = registry.contents
        var told: [(channel: ChannelState, side: Int)] = []
        for channel in contents.channels(of: domain) where channel.controlPageWritten {
            guard let index = channel.sides.firstIndex(where: { $0.domain == domain }),
                  let first = channel.sides[index].windowFirstGFN else { continue }
            let low = first.rawValue, high = low + UInt64(channel.pageCount)
            let overlaps = mapped.contains { range in
                range.firstGFN.rawValue < high && range.firstGFN.rawValue + UInt64(max(range.pageCount, 0)) > low
            }
            guard overlaps else { continue }
            var updated = channel
            updated.sides[index].processExits &+= 1
            contents.channels[channel.name] = updated
            told.append((updated, index))
        }
        guard !told.isEmpty else { return [] }
        let final = contents
        // Recorded first, so a count the peer has seen is never handed out again.
        do {
            try registry.commit { $0 = final }
        } catch {
            throw .registry("an agent process of \(domain) went away, but the channel registry could not record it (\(error)); its peers were not told")
        }
        for (channel, index) in told { tellPeer(channel, exitedSide: index) }
        return told.map(\.channel.name)
    }

    /// Writes the exited side's count into the shared control page and wakes
    /// what the other side may sleep on (the four ring indices and the
    /// host's `closed` word, as a teardown does).
    private func tellPeer(_ channel: ChannelState, exitedSide index: Int) {
        guard let holder = channel.sides.first(where: { !$0.backing.isEmpty }) else { return }
        let exited = channel.sides[index]
        let role: ChannelSide = index == 0 ? .initiator : .responder
        let base = ControlPage.Offset.hostState
        var problems: [String] = []
        note(&problems, "\(holder.domainName) (\(holder.domain)): writing the process-exit count of \(exited.domainName)") {
            () throws(XenErrno) in
            try host.writeGuestMemory(holder.domain, gfn: holder.backing[0],
                                      offset: base + ControlPage.HostField.processExits(of: role),
                                      bytes: littleEndianBytes(exited.processExits))
        }
        guard problems.isEmpty else { return }
        wakeAll(channel, except: exited.domain)
    }

    /// A re-issue cuts the sessions off: the new generation goes into the
    /// control page's host line and every word an agent may sleep on is
    /// woken. An endpoint whose descriptor is older ends its session with
    /// ``descriptorsReissued`` at its next wait, and the agents open the new
    /// descriptors. Nothing is written when the control page is not there
    /// yet; a failed write leaves the old sessions running (they end at the
    /// next re-issue or when their keys age out) and is not an error of the
    /// re-issue, whose descriptors are published.
    func announceGeneration(_ channel: ChannelState) {
        guard channel.controlPageWritten, let holder = channel.sides.first(where: { !$0.backing.isEmpty }) else { return }
        let base = ControlPage.Offset.hostState
        var problems: [String] = []
        note(&problems, "\(holder.domainName) (\(holder.domain)): writing the generation of '\(channel.name)'") {
            () throws(XenErrno) in
            try host.writeGuestMemory(holder.domain, gfn: holder.backing[0], offset: base + ControlPage.HostField.generation,
                                      bytes: littleEndianBytes(channel.generation))
        }
        guard problems.isEmpty else { return }
        wakeAll(channel, except: nil)
    }

    /// Wakes every word the agents of `channel` may sleep on (the four ring
    /// indices and the host's `closed` word), on the sides other than `except`.
    func wakeAll(_ channel: ChannelState, except: DomainID?) {
        let words = [ControlPage.Offset.ring0Producer, ControlPage.Offset.ring0Consumer,
                     ControlPage.Offset.ring1Producer, ControlPage.Offset.ring1Consumer,
                     ControlPage.Offset.hostState + ControlPage.HostField.closed]
        for reader in channel.sides where reader.domain != except && !reader.backing.isEmpty {
            for offset in words {
                host.wake(reader.domain, gfn: reader.backing[0], offset: offset, port: channel.port ?? 0)
            }
        }
    }
}
