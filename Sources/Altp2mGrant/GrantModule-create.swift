import Altp2m
import ChannelCrypto

/// What the creation of one channel did to one of its domains, so that a
/// failure undoes exactly that.
struct DomainWork {
    var state: DomainState
    /// The domain had no channels: its channel view was made in this call
    /// (and is retired again on failure).
    var isNew: Bool
    /// vCPUs whose #VE was enabled in this call, with their info pages.
    var notifyEnabledNow: [VCPUID: GFN] = [:]
}

/// The two domains of a request once they are found and checked.
struct ResolvedPair {
    /// Initiator (lower id), then responder.
    var infos: [DomainInfo]
    /// Each domain's agent key, in the same order.
    var agentKeys: [Curve25519.KeyAgreement.PublicKey]
    var warnings: [String]
}

extension GrantModule {
    /// Creates a channel between two domains.
    ///
    /// Steps (each undone if a later one fails, so no half-made channel
    /// remains; the error names the step):
    /// 1. checks: name, page count, both domains exist and are HVM, their
    ///    altp2m mode is external or limited (mixed only with `allowMixed`),
    ///    the policy allows the pair with these settings, both agents have
    ///    registered keys;
    /// 2. per domain: altp2m activated if it was not, then `access_required` set while altp2m is active
    ///    (Xen keeps it per p2m), its one channel view found or created;
    /// 3. the channel view made visible, #VE (and with it VMFUNC) enabled on
    ///    every vCPU with an info page per vCPU; other visible views reported;
    /// 4. `N` shared frames obtained, a window of `N` gfns reserved in each
    ///    domain and remapped onto them in the channel view, the window and
    ///    the backing gfns locked out of every other view (see `applyWindow`);
    /// 5. a notification port, a fresh pre-shared key and channel id, one
    ///    descriptor per side sealed to its agent and signed by the host,
    ///    the control page header written, the descriptors published;
    /// 6. the channel recorded in the registry.
    ///
    /// - Returns: the channel and any warnings.
    /// - Throws: ``ChannelSetupError`` with the failed step, its cause and a
    ///   detail that names the domain, view or gfn.
    @discardableResult
    public func createChannel(_ request: ChannelRequest) throws(ChannelSetupError) -> ChannelCreation {
        let details = ["pages": "\(request.pageCount)", "suite": request.suite.description,
                       "mode": request.mode.description, "one_way": "\(request.oneWay)"]
        return try audited(.channelCreate, channel: request.name,
                           domains: [request.first.description, request.second.description], details: details,
                           resolved: { ([$0.channel.initiator.domainName, $0.channel.responder.domainName], $0.channel.generation) }) { () throws(ChannelSetupError) in
            try makeChannel(request)
        }
    }

    private func makeChannel(_ request: ChannelRequest) throws(ChannelSetupError) -> ChannelCreation {
        let pair: ResolvedPair
        do {
            pair = try check(request)
        } catch {
            throw .step(error.step, error.cause, error.detail)
        }
        let now = clock()
        var work = ChannelState(
            id: ChannelID(bytes: SecureRandom.bytes(ChannelID.byteCount))!, name: request.name,
            pageCount: request.pageCount, isOneWay: request.oneWay, suite: request.suite, mode: request.mode,
            createdAt: now, expiresAt: now + request.descriptorLifetime,
            generation: registry.contents.nextGeneration, frames: nil, port: nil,
            sides: pair.infos.map { SideState(domain: $0.id, domainName: $0.name, view: .hostOrView0) })
        var domains: [DomainWork] = []
        var warnings = pair.warnings
        do {
            try build(&work, &domains, pair: pair, warnings: &warnings)
        } catch {
            var notes: [String] = []
            let problems = undo(work, domains, notes: &notes)
            var detail = error.detail
            if !problems.isEmpty {
                detail += "; undoing the earlier steps also failed, and this is left over: " + problems.joined(separator: "; ")
            }
            if !notes.isEmpty {
                detail += "; left as it is: " + notes.joined(separator: "; ")
            }
            throw .step(error.step, error.cause, detail)
        }
        return ChannelCreation(channel: summary(work), warnings: warnings)
    }

    // MARK: Step 1

    private func check(_ request: ChannelRequest) throws(StepFailure) -> ResolvedPair {
        guard ChannelDescriptor.isValidName(request.name) else {
            throw StepFailure(.policy, .invalidRequest,
                              "'\(request.name)' is not a valid channel name: use 1 to 64 letters, digits, '_' or '-', not starting with '-' (the names xenstore takes; no '.')")
        }
        if registry.contents.channels[request.name] != nil {
            throw StepFailure(.policy, .invalidRequest,
                              "a channel named '\(request.name)' already exists; choose another name or run: chanctl channel destroy \(request.name)")
        }
        guard RingGeometry.pageCountRange.contains(request.pageCount) else {
            throw StepFailure(.policy, .invalidRequest,
                              "a channel window has \(RingGeometry.pageCountRange.lowerBound) to \(RingGeometry.pageCountRange.upperBound) pages, not \(request.pageCount)")
        }
        guard request.descriptorLifetime >= 1 else {
            throw StepFailure(.policy, .invalidRequest, "the descriptor lifetime must be at least one second")
        }
        let domains = try during(.policy, "listing domains") { () throws(XenErrno) in try host.listDomains() }
        let first = try resolve(request.first, in: domains)
        let second = try resolve(request.second, in: domains)
        guard first.id != second.id else {
            throw StepFailure(.policy, .invalidRequest, "a channel needs two different domains, not \(first.name) twice")
        }

        let policy: GrantPolicy
        do {
            policy = try loadPolicy()
        } catch {
            throw StepFailure(.policy, .storage(error.description), error.description)
        }
        let counts = (registry.contents.channels(of: first.id).count, registry.contents.channels(of: second.id).count)
        if let refusal = policy.refusal(between: first.name, and: second.name, pages: request.pageCount,
                                        suite: request.suite, mode: request.mode, oneWay: request.oneWay,
                                        channelCounts: counts) {
            throw StepFailure(.policy, .denied, refusal)
        }

        var warnings: [String] = []
        for info in [first, second] {
            guard info.id != .controlDomain else {
                throw StepFailure(.policy, .invalidRequest, "the control domain cannot be an end of a channel")
            }
            guard info.kind == .hvm else {
                throw StepFailure(.policy, .invalidRequest,
                                  "\(info.name) (\(info.id)) is a PV domain; altp2m needs an HVM or PVH guest")
            }
            let mode = try during(.policy, "reading the altp2m mode of \(info.name) (\(info.id))") {
                () throws(XenErrno) in try host.getAltp2mParam(info.id)
            }
            switch mode {
            case .external, .limited:
                break
            case .mixed where request.allowMixed:
                warnings.append("\(info.name) (\(info.id)) is in mixed altp2m mode: any code in that guest can create, change and unhide views, so view isolation does not hold against it; only encryption protects the channel")
            case .mixed:
                throw StepFailure(.policy, .invalidRequest,
                                  "\(info.name) (\(info.id)) is in mixed altp2m mode, where any code in the guest can create, change and unhide views; recreate it with altp2m=\"external\" (or allow mixed mode explicitly)")
            case .disabled:
                throw StepFailure(.policy, .invalidRequest,
                                  "\(info.name) (\(info.id)) has altp2m disabled; set altp2m=\"external\" in its xl.cfg (simulator: create the domain with --altp2m external)")
            }
            try refuseLogDirty(info)
        }
        var keysInOrder: [Curve25519.KeyAgreement.PublicKey] = []
        let ordered = first.id < second.id ? [first, second] : [second, first]
        for info in ordered {
            guard let key = keys.agents[info.name] else {
                throw StepFailure(.policy, .invalidRequest,
                                  "no agent key is registered for \(info.name); run: chanctl keys register \(info.name) <agent-public-key-hex>")
            }
            keysInOrder.append(key)
        }
        return ResolvedPair(infos: ordered, agentKeys: keysInOrder, warnings: warnings)
    }

    /// Refuses a domain in log-dirty mode (live migration, or a device model
    /// tracking VRAM). There, a write fault on a log-dirty entry makes Xen
    /// run `p2m_change_type_one`, which gives the host entry the default
    /// access and pushes it into every view holding the gfn: the window's
    /// `n` would become the default in every view and the channel view's
    /// remap would be replaced (docs/XEN.md). A backend that cannot tell
    /// (`nil`, Xen) is not refused; docs/XEN.md tells the operator.
    func refuseLogDirty(_ info: DomainInfo) throws(StepFailure) {
        let who = "\(info.name) (\(info.id))"
        let logDirty = try during(.policy, "\(who): reading whether it is in log-dirty mode") { () throws(XenErrno) in
            try host.logDirtyMode(info.id)
        }
        guard logDirty != true else {
            throw StepFailure(.policy, .invalidRequest,
                              "\(who) is in log-dirty mode (live migration or VRAM tracking), where a write fault resets the access of the gfn in every view and would undo the lock-out; create the channel once the migration has finished or been cancelled")
        }
    }

    /// Finds a domain by name, or by id (`7` or `d7`) when no domain has that name.
    func resolve(_ reference: DomainReference, in domains: [DomainInfo]) throws(StepFailure) -> DomainInfo {
        switch reference {
        case .id(let id):
            if let info = domains.first(where: { $0.id == id }) { return info }
        case .name(let name):
            if let info = domains.first(where: { $0.name == name }) { return info }
            let digits = name.hasPrefix("d") ? String(name.dropFirst()) : name
            if let raw = UInt16(digits), let info = domains.first(where: { $0.id.rawValue == raw }) { return info }
        }
        throw StepFailure(.policy, .invalidRequest, "no domain '\(reference)' exists; run: chanctl domain list")
    }

    // MARK: Steps 2 to 6

    private func build(_ work: inout ChannelState, _ domains: inout [DomainWork], pair: ResolvedPair,
                       warnings: inout [String]) throws(StepFailure) {
        // 2. altp2m, the channel view and access_required, per domain.
        for (index, info) in pair.infos.enumerated() {
            try prepareDomain(info, into: &domains)
            work.sides[index].view = domains[index].state.view
        }

        // 3. Visibility and #VE / VMFUNC on every vCPU, before the window
        //    exists: on Xen the mapping agent must enter its channel view
        //    during the frame flow (docs/XEN.md), and an empty visible view
        //    exposes nothing.
        for index in domains.indices {
            let state = domains[index].state
            let who = "\(state.name) (\(state.domain))"
            let views = try during(.visibility, "\(who): listing views") { () throws(XenErrno) in
                try host.activeViews(state.domain)
            }
            if views.first(where: { $0.view == state.view })?.isVisible != true {
                try during(.visibility, "\(who): making the channel \(state.view) visible") { () throws(XenErrno) in
                    try host.setVisibility(state.domain, view: state.view, visible: true)
                }
            }
            let strangers = views.filter { $0.view != .hostOrView0 && $0.view != state.view && $0.isVisible != false }
            if !strangers.isEmpty {
                let list = strangers.map(\.description).joined(separator: ", ")
                warnings.append("\(who) has other views its guest can reach with VMFUNC besides view 0 and the channel \(state.view): \(list); code in the guest may enter them")
            }
            try enableNotify(&domains[index])
        }

        // 4. Frames, windows, lock-out and remap.
        let a = work.sides[0].domain, b = work.sides[1].domain
        let views = (first: work.sides[0].view, second: work.sides[1].view)
        let frames = try during(.sharedFrames, "obtaining \(work.pageCount) frames shared by \(pair.infos[0].name) and \(pair.infos[1].name)") {
            () throws(XenErrno) in try host.obtainSharedFrames(between: a, and: b, count: work.pageCount, views: views)
        }
        work.frames = frames
        for index in work.sides.indices {
            work.sides[index].backing = frames.gfns(of: work.sides[index].domain) ?? []
        }
        for index in work.sides.indices {
            let side = work.sides[index]
            work.sides[index].windowFirstGFN = try during(.reserveWindow, "reserving a window of \(work.pageCount) gfns in \(side.domainName) (\(side.domain))") {
                () throws(XenErrno) in try host.reserveWindow(side.domain, pageCount: work.pageCount)
            }
        }
        for index in work.sides.indices {
            let side = work.sides[index]
            var originals: [MemAccess] = []
            for gfn in side.windowGFNs(pageCount: work.pageCount) + side.backing {
                originals.append(try during(.lockOut, "\(side.domainName) (\(side.domain)): reading the host access of \(gfn)") {
                    () throws(XenErrno) in try host.getMemAccess(side.domain, view: .hostOrView0, gfn: gfn)
                })
            }
            work.sides[index].originalAccess = originals
            work.sides[index].applied = true
            try applyWindow(work.sides[index], pageCount: work.pageCount)
        }

        // 5. Port, descriptors, control page, publication.
        work.port = try during(.notificationPort, "allocating a notification port of \(pair.infos[0].name) for \(pair.infos[1].name)") {
            () throws(XenErrno) in try host.allocateNotificationPort(a, remote: b)
        }
        var pages: [DomainID: [VCPUID: GFN]] = [:]
        for domain in domains { pages[domain.state.domain] = domain.state.notifyPages }
        // The generation is used up before a descriptor carries it: a
        // creation that fails from here on, rolled back, leaves it taken, so
        // the next creation never publishes the same generation again.
        do {
            work.generation = try registry.reserveGeneration()
        } catch {
            throw StepFailure(.registry, .storage(error.description), "reserving a descriptor generation for '\(work.name)': \(error)")
        }
        let envelopes = try sealDescriptors(work, agentKeys: pair.agentKeys, notifyPages: pages, issuedAt: work.createdAt)
        try writeControlPage(work)
        work.controlPageWritten = true
        for (index, envelope) in envelopes.enumerated() {
            let side = work.sides[index]
            try during(.publish, "publishing the descriptor for \(side.domainName) (\(side.domain))") {
                () throws(XenErrno) in try host.publishDescriptor(envelope, for: side.domain, name: work.name)
            }
            work.published.append(side.domain)
        }

        // 6. The registry.
        let finished = work
        let states = domains.map(\.state)
        do {
            try registry.commit { contents in
                contents.channels[finished.name] = finished
                for state in states { contents.domains[state.domain] = state }
                contents.nextGeneration = max(contents.nextGeneration, finished.generation + 1)
            }
        } catch {
            throw StepFailure(.registry, .storage(error.description), "recording '\(work.name)': \(error)")
        }
    }

    /// Step 2 for one domain. The work record is appended before anything
    /// changes, so a failure half-way is undone too.
    ///
    /// Order, and why: `access_required` is a flag of each p2m on Xen, and
    /// `arch_p2m_set_access_required` writes the views' flags only while
    /// altp2m is active (spec §2.2). So altp2m is activated first, and the
    /// flag is set after it, every time: also when it reads as set already
    /// (someone may have set it while altp2m was inactive, so the host has it
    /// and the views do not) and when the domain already carries channels
    /// (an activation the grant module did not do may lie between). Setting
    /// it again is harmless; a view without it would relax a stray access to
    /// `rwx` when no monitor listens, which the lock-out must never allow.
    private func prepareDomain(_ info: DomainInfo, into domains: inout [DomainWork]) throws(StepFailure) {
        let who = "\(info.name) (\(info.id))"
        if let existing = registry.contents.domains[info.id] {
            domains.append(DomainWork(state: existing, isNew: false))
            let views = try during(.channelView, "\(who): listing views") { () throws(XenErrno) in
                try host.activeViews(info.id)
            }
            guard views.contains(where: { $0.view == existing.view }) else {
                throw StepFailure(.channelView, .verification,
                                  "\(who): its channel \(existing.view) no longer exists (altp2m was reset outside the grant module); destroy its channels first: chanctl channel destroy <name>")
            }
            try during(.accessRequired, "\(who): setting access_required again (altp2m is active)") {
                () throws(XenErrno) in try host.setAccessRequired(info.id, true)
            }
            return
        }
        // `foundSet` until the flag is read: a failure before that leaves it alone.
        var work = DomainWork(state: DomainState(domain: info.id, name: info.name, view: .hostOrView0,
                                                 activatedByUs: false, accessRequired: .foundSet), isNew: true)
        domains.append(work)
        let index = domains.count - 1
        let active = try during(.activateAltp2m, "\(who): reading the altp2m state") { () throws(XenErrno) in
            try host.getDomainState(info.id)
        }
        if !active {
            try during(.activateAltp2m, "\(who): activating altp2m") { () throws(XenErrno) in
                try host.setDomainState(info.id, active: true)
            }
            work.state.activatedByUs = true
            domains[index] = work
        }
        let required = try during(.accessRequired, "\(who): reading access_required") { () throws(XenErrno) in
            try host.accessRequired(info.id)
        }
        // Recorded before the call, so that a failure half-way is undone.
        // Only here, for the domain's first channel: the later ones find the
        // flag as the grant module left it, and keep this record.
        work.state.accessRequired = AccessRequiredOrigin(found: required)
        domains[index] = work
        try during(.accessRequired, "\(who): setting access_required (altp2m is active, so every view gets it)") {
            () throws(XenErrno) in try host.setAccessRequired(info.id, true)
        }
        do {
            work.state.view = try host.createView(info.id, defaultAccess: .default)
        } catch {
            let detail = error == .invalid
                ? "\(who): every view is in use (\((try? host.activeViews(info.id).count) ?? 0) active); destroy a view that is not needed (chanctl altp2m destroy-view)"
                : "\(who): creating the channel view"
            throw StepFailure(.channelView, .hypervisor(error), detail)
        }
        domains[index] = work
    }

    /// Step 4's #VE part for one domain: an info page and `vcpu_enable_notify`
    /// for every vCPU the grant module has not enabled yet. `EEXIST` means
    /// someone else enabled #VE on that vCPU, which serves as well.
    private func enableNotify(_ work: inout DomainWork) throws(StepFailure) {
        let domain = work.state.domain
        let who = "\(work.state.name) (\(domain))"
        let count = try during(.enableNotify, "\(who): reading the vCPU count") { () throws(XenErrno) in
            try host.vcpuCount(domain)
        }
        for raw in 0..<count {
            let vcpu = VCPUID(raw)
            guard work.state.notifyPages[vcpu] == nil else { continue }
            let page = try during(.enableNotify, "\(who): reserving the #VE info page of \(vcpu)") { () throws(XenErrno) in
                try host.reserveVEInfoPage(domain)
            }
            do {
                try host.vcpuEnableNotify(domain, vcpu: vcpu, gfn: page)
            } catch {
                try? host.releaseVEInfoPage(domain, gfn: page)
                if error == .exists { continue }
                let detail = error == .notSupported
                    ? "\(who): \(vcpu): the CPU has no #VE, so Xen cannot give the guest hardware VMFUNC (spec §1.6); channels need an Intel CPU with VMFUNC and #VE"
                    : "\(who): vcpu_enable_notify(\(vcpu), \(page))"
                throw StepFailure(.enableNotify, .hypervisor(error), detail)
            }
            work.state.notifyPages[vcpu] = page
            work.notifyEnabledNow[vcpu] = page
        }
    }

    /// Step 5's descriptors: one per side, sealed to that side's agent and
    /// signed by the host. The plaintexts (which hold the pre-shared key)
    /// are wiped as soon as they are sealed.
    /// - Parameters:
    ///   - agentKeys: the initiator's and the responder's agent keys.
    ///   - notifyPages: the #VE info pages the grant module enabled, per domain.
    ///   - issuedAt: the descriptors' creation time.
    func sealDescriptors(_ channel: ChannelState, agentKeys: [Curve25519.KeyAgreement.PublicKey],
                         notifyPages: [DomainID: [VCPUID: GFN]], issuedAt: UInt64) throws(StepFailure) -> [[UInt8]] {
        let psk = SecureBytes(randomCount: ChannelDescriptor.keyByteCount)
        var envelopes: [[UInt8]] = []
        for (index, side) in channel.sides.enumerated() {
            let vcpus = (try? host.vcpuCount(side.domain)) ?? 0
            let known = notifyPages[side.domain] ?? [:]
            let pages = (0..<max(vcpus, 1)).map { known[VCPUID($0)] ?? .invalid }
            var descriptor = ChannelDescriptor(
                channelID: channel.id, name: channel.name, initiator: channel.initiator.domain,
                responder: channel.responder.domain, recipient: side.domain, view: side.view,
                windowFirstGFN: side.windowFirstGFN ?? .invalid, pageCount: UInt32(channel.pageCount),
                isOneWay: channel.isOneWay, peerPublicKey: agentKeys[1 - index].rawRepresentation,
                presharedKey: psk.unsafeArray, suite: channel.suite, mode: channel.mode,
                notificationPort: channel.port ?? 0, veInfoGFNs: Array(pages.prefix(ChannelDescriptor.vcpuCountRange.upperBound)),
                createdAt: issuedAt, expiresAt: channel.expiresAt, generation: channel.generation)
            var plaintext = descriptor.encoded()
            secureZero(&descriptor.presharedKey)
            let box: [UInt8]
            do {
                box = try AnonymousSealedBox.seal(plaintext, to: agentKeys[index])
            } catch {
                secureZero(&plaintext)
                throw StepFailure(.sealDescriptors, .crypto(error),
                                  "sealing the descriptor to the agent key of \(side.domainName) (\(side.domain))")
            }
            secureZero(&plaintext)
            let signed = DescriptorEnvelope.signedPortion(recipient: side.domain, sealedBox: box)
            envelopes.append(DescriptorEnvelope.assemble(signedPortion: signed,
                                                         signature: keys.hostKey.signature(for: signed)))
        }
        return envelopes
    }

    /// Step 5's control page: the ring header in the first shared frame,
    /// written before either agent can have the descriptor.
    func writeControlPage(_ channel: ChannelState) throws(StepFailure) {
        let geometry: RingGeometry
        do {
            geometry = try RingGeometry(pageCount: channel.pageCount, oneWay: channel.isOneWay)
        } catch {
            throw StepFailure(.controlPage, .invalidRequest, error.description)
        }
        var page = [UInt8](repeating: 0, count: RingGeometry.pageSize)
        page.withUnsafeMutableBytes { ControlPage(base: $0.baseAddress!).initialize(geometry: geometry, channelID: channel.id.bytes,
                                                                                       generation: channel.generation) }
        let side = channel.initiator
        guard let first = side.backing.first else {
            throw StepFailure(.controlPage, .verification, "the channel has no shared frames")
        }
        try during(.controlPage, "writing the control page into \(side.domainName) (\(side.domain)) gfn \(first)") {
            () throws(XenErrno) in try host.writeGuestMemory(side.domain, gfn: first, offset: 0, bytes: page)
        }
    }
}
