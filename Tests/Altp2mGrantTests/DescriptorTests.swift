import Testing
import Altp2m
import Altp2mGrant
import Altp2mSim
import ChannelCrypto
import SecureChannel

private func sampleDescriptor(recipient: DomainID = 3, generation: UInt64 = 7) -> ChannelDescriptor {
    ChannelDescriptor(channelID: ChannelID(bytes: Array(1...16))!, name: "orders_v1", initiator: 3, responder: 9,
                      recipient: recipient, view: 2, windowFirstGFN: 0x10_0000, pageCount: 17, isOneWay: false,
                      peerPublicKey: [UInt8](repeating: 0x42, count: 32), presharedKey: [UInt8](repeating: 0x5A, count: 32),
                      suite: .aesgcm, mode: .encrypted, notificationPort: 12, veInfoGFNs: [0xF_0000, .invalid],
                      createdAt: 1000, expiresAt: 4600, generation: generation)
}

@Suite("Channel descriptor encoding")
struct DescriptorEncodingTests {
    @Test("encoding and decoding round-trip")
    func roundTrip() throws {
        let descriptor = sampleDescriptor()
        let decoded = try ChannelDescriptor(decoding: descriptor.encoded())
        #expect(decoded == descriptor)
        #expect(decoded.side == .initiator && decoded.peer == 9)
        #expect(!descriptor.description.contains("5a5a"), "the pre-shared key is never printed")
    }

    @Test("every truncation is refused and names a field")
    func truncation() throws {
        let bytes = sampleDescriptor().encoded()
        for length in 0..<bytes.count {
            #expect {
                _ = try ChannelDescriptor(decoding: bytes[0..<length])
            } throws: { error in
                guard case ChannelDescriptor.DecodingError.truncated(let field) = error else { return false }
                return !field.isEmpty
            }
        }
        #expect(throws: ChannelDescriptor.DecodingError.trailingBytes(1)) { try ChannelDescriptor(decoding: bytes + [0]) }
    }

    @Test("invalid values are refused with the field's name", arguments: [
        ("version", 4, UInt8(2)), ("window.pageCount", 0, UInt8(1)), ("flags", 0, UInt8(0x82)),
        ("suite", 0, UInt8(7)), ("mode", 0, UInt8(9)), ("name.length", 0, UInt8(0)),
    ] as [(String, Int, UInt8)])
    func invalidField(field: String, extraOffset: Int, value: UInt8) throws {
        let descriptor = sampleDescriptor()
        var bytes = descriptor.encoded()
        let nameEnd = 4 + 2 + 16 + 1 + descriptor.name.utf8.count
        let offsets: [String: Int] = [
            "version": 0, "name.length": 22, "window.pageCount": nameEnd + 16,
            "flags": nameEnd + 20, "suite": nameEnd + 21 + 64, "mode": nameEnd + 22 + 64,
        ]
        bytes[offsets[field]! + extraOffset] = value
        #expect {
            _ = try ChannelDescriptor(decoding: bytes)
        } throws: { error in
            guard let error = error as? ChannelDescriptor.DecodingError else { return false }
            return error.field == field || (field == "version" && error == .unsupportedVersion(2))
        }
    }

    @Test("relations between fields are checked")
    func relations() throws {
        var swapped = sampleDescriptor()
        swapped.initiator = 9
        swapped.responder = 3
        #expect(throws: ChannelDescriptor.DecodingError.self) { try ChannelDescriptor(decoding: swapped.encoded()) }
        var stranger = sampleDescriptor()
        stranger.recipient = 5
        #expect(throws: ChannelDescriptor.DecodingError.invalid(field: "recipient", reason: "d5 is neither end of the channel")) {
            try ChannelDescriptor(decoding: stranger.encoded())
        }
        var backwards = sampleDescriptor()
        backwards.expiresAt = backwards.createdAt
        #expect { try ChannelDescriptor(decoding: backwards.encoded()) } throws: { ($0 as? ChannelDescriptor.DecodingError)?.field == "expiresAt" }
        var badName = sampleDescriptor()
        badName.name = "../etc"
        #expect { try ChannelDescriptor(decoding: badName.encoded()) } throws: { ($0 as? ChannelDescriptor.DecodingError)?.field == "name" }
        badName.name = "orders.v1"
        #expect { try ChannelDescriptor(decoding: badName.encoded()) } throws: { ($0 as? ChannelDescriptor.DecodingError)?.field == "name" }
    }

    @Test("channel names: letters, digits, _ and -, as xenstore takes them; no dot, slash or @")
    func names() {
        for name in ["a", "orders_v1", "Orders-2", "_private", "trailing-", "0", String(repeating: "x", count: 64)] {
            #expect(ChannelDescriptor.isValidName(name), "\(name)")
        }
        for name in ["", "orders.v1", ".hidden", "v1.", "-option", "a/b", "@introduceDomain", "a@b", "a b", "caf\u{e9}",
                     "../etc", "a\u{0}", String(repeating: "x", count: 65)] {
            #expect(!ChannelDescriptor.isValidName(name), "\(name)")
        }
    }

    @Test("the simulator's descriptor store and the grant module refuse a name xenstore would refuse")
    func storeNames() throws {
        let world = try SimWorld()
        let alpha = try world.addDomain("alpha").domain
        try world.addDomain("beta")
        try world.grants.allow("alpha", "beta")
        #expect(throws: XenErrno.invalid) { try world.host.publishDescriptor([1, 2, 3], for: alpha, name: "orders.v1") }
        #expect(world.host.descriptorNames(for: alpha).isEmpty)
        #expect(throws: XenErrno.noEntry) { try world.host.readDescriptor(for: alpha, name: "../x", as: alpha) }
        try world.host.publishDescriptor([1, 2, 3], for: alpha, name: "orders_v1")
        #expect(try world.host.readDescriptor(for: alpha, name: "orders_v1", as: alpha) == [1, 2, 3])

        do {
            try world.grants.createChannel(ChannelRequest(name: "orders.v1", between: "alpha", and: "beta", pageCount: 2))
            Issue.record("a dotted name must be refused")
        } catch {
            #expect(error.failedStep == .policy && error.detail.contains("no '.'"), "\(error)")
        }
    }
}

@Suite("Descriptor opening")
struct DescriptorOpeningTests {
    /// A channel between alpha and beta, and alpha's published envelope.
    private func made() throws -> (SimWorld, ChannelSummary, [UInt8]) {
        let world = try SimWorld()
        try world.addDomain("alpha")
        try world.addDomain("beta")
        try world.grants.allow("alpha", "beta")
        let channel = try world.grants.createChannel(ChannelRequest(name: "c", between: "alpha", and: "beta", pageCount: 9,
                                                                    suite: .aesgcm, descriptorLifetime: 600)).channel
        let envelope = try world.host.readDescriptor(for: channel.initiator.domain, name: "c", as: channel.initiator.domain)
        return (world, channel, envelope)
    }

    private func opener(_ world: SimWorld, _ name: String, hostKey: Curve25519.Signing.PublicKey? = nil,
                        agentKey: Curve25519.KeyAgreement.PrivateKey? = nil, domain: DomainID? = nil) -> DescriptorOpener {
        let agent = world.agents[name]!
        return DescriptorOpener(hostKey: hostKey ?? world.grants.hostPublicKey, agentKey: agentKey ?? agent.key,
                                domain: domain ?? agent.domain)
    }

    @Test("both agents open their descriptors and agree on everything shared")
    func opens() throws {
        let (world, channel, envelope) = try made()
        var guardA = DescriptorReplayGuard(), guardB = DescriptorReplayGuard()
        let a = try opener(world, "alpha").open(envelope, named: "c", now: world.clock.now, replayGuard: &guardA)
        let other = try world.host.readDescriptor(for: channel.responder.domain, name: "c", as: channel.responder.domain)
        let b = try opener(world, "beta").open(other, named: "c", now: world.clock.now, replayGuard: &guardB)
        #expect(a.descriptor.view == channel.initiator.view)
        #expect(a.descriptor.windowFirstGFN == channel.initiator.windowFirstGFN)
        #expect(b.descriptor.windowFirstGFN == channel.responder.windowFirstGFN)
        #expect(a.descriptor.pageCount == 9 && a.descriptor.suite == .aesgcm)
        #expect(a.side == .initiator && b.side == .responder)
        #expect(a.presharedKey == b.presharedKey, "one pre-shared key per channel")
        #expect(a.descriptor.presharedKey.allSatisfy { $0 == 0 }, "the array copy is wiped")
        #expect(a.peerPublicKey == world.agents["beta"]!.key.publicKey)
        #expect(b.peerPublicKey == world.agents["alpha"]!.key.publicKey)
        #expect(a.prologue == b.prologue)
        #expect(a.descriptor.veInfoGFNs.count == 2 && !a.descriptor.veInfoGFNs.contains(.invalid))
        #expect(a.descriptor.expiresAt == world.clock.now + 600)
    }

    @Test("changing any byte of the envelope breaks the signature")
    func tamperEveryByte() throws {
        let (world, _, envelope) = try made()
        let opener = opener(world, "alpha")
        for index in envelope.indices {
            var tampered = envelope
            tampered[index] ^= 0x01
            var replayGuard = DescriptorReplayGuard()
            #expect(throws: DescriptorError.badSignature, "byte \(index)") {
                try opener.open(tampered, named: "c", now: world.clock.now, replayGuard: &replayGuard)
            }
        }
        var replayGuard = DescriptorReplayGuard()
        #expect(throws: DescriptorError.badSignature) { try opener.open(Array(envelope.dropLast()), named: "c", now: world.clock.now, replayGuard: &replayGuard) }
        #expect(throws: DescriptorError.malformed("envelope")) { try opener.open([1, 2, 3], named: "c", now: world.clock.now, replayGuard: &replayGuard) }
    }

    @Test("each kind of refusal has its own error")
    func distinctErrors() throws {
        let (world, channel, envelope) = try made()
        let now = world.clock.now
        var fresh = DescriptorReplayGuard()
        #expect(throws: DescriptorError.notForThisKey) {
            try opener(world, "alpha", agentKey: Curve25519.KeyAgreement.PrivateKey()).open(envelope, named: "c", now: now, replayGuard: &fresh)
        }
        #expect(throws: DescriptorError.badSignature) {
            try opener(world, "alpha", hostKey: Curve25519.Signing.PrivateKey().publicKey).open(envelope, named: "c", now: now, replayGuard: &fresh)
        }
        #expect(throws: DescriptorError.wrongRecipient) {
            try opener(world, "alpha", domain: channel.responder.domain).open(envelope, named: "c", now: now, replayGuard: &fresh)
        }
        #expect(throws: DescriptorError.expired) {
            try opener(world, "alpha").open(envelope, named: "c", now: now + 600, replayGuard: &fresh)
        }
        #expect(fresh == DescriptorReplayGuard(), "nothing refused was recorded")
        _ = try opener(world, "alpha").open(envelope, named: "c", now: now + 599, replayGuard: &fresh)
        // The same descriptor again: a restarted agent reopening the channel.
        _ = try opener(world, "alpha").open(envelope, named: "c", now: now, replayGuard: &fresh)
        // A re-issue has a newer generation: accepted, and the old one stays refused.
        let reissued = try world.grants.reissueDescriptors("c")
        #expect(reissued.generation > channel.generation)
        let newer = try world.host.readDescriptor(for: channel.initiator.domain, name: "c", as: channel.initiator.domain)
        let opened = try opener(world, "alpha").open(newer, named: "c", now: now, replayGuard: &fresh)
        #expect(opened.descriptor.generation == reissued.generation)
        #expect(throws: DescriptorError.replayed) { try opener(world, "alpha").open(envelope, named: "c", now: now, replayGuard: &fresh) }
    }

    @Test("an envelope found under another name than the one signed is refused, and nothing is recorded")
    func misnamed() throws {
        let (world, _, envelope) = try made()
        var replayGuard = DescriptorReplayGuard()
        // Whoever writes the store copied channel c's envelope to admin-x.
        #expect(throws: DescriptorError.nameMismatch(expected: "admin-x", signed: "c")) {
            try opener(world, "alpha").open(envelope, named: "admin-x", now: world.clock.now, replayGuard: &replayGuard)
        }
        #expect(replayGuard == DescriptorReplayGuard(), "a refused descriptor is not recorded")
        let opened = try opener(world, "alpha").open(envelope, named: "c", now: world.clock.now, replayGuard: &replayGuard)
        #expect(opened.descriptor.name == "c")
    }

    @Test("a destroyed channel's envelope, published again after first fit gave its window to a newer channel: the guard lets the same generation reopen, the window's header names the newer channel")
    func replayAfterDestroy() throws {
        let (world, old, envelope) = try made()
        var replayGuard = DescriptorReplayGuard()
        let first = try opener(world, "alpha").open(envelope, named: "c", now: world.clock.now, replayGuard: &replayGuard)
        try world.grants.destroyChannel("c")
        let new = try world.grants.createChannel(ChannelRequest(name: "d", between: "alpha", and: "beta", pageCount: 9,
                                                                suite: .aesgcm, descriptorLifetime: 600)).channel
        #expect(new.initiator.view == old.initiator.view && new.initiator.windowFirstGFN == old.initiator.windowFirstGFN,
                "the attack needs d to have c's window")
        #expect(new.generation > old.generation)
        let newer = try world.host.readDescriptor(for: new.initiator.domain, name: "d", as: new.initiator.domain)
        let second = try opener(world, "alpha").open(newer, named: "d", now: world.clock.now, replayGuard: &replayGuard)

        // c's envelope is still signed and unexpired, and its generation is
        // the newest of channel c: the guard accepts it (a reopening)...
        let replayed = try opener(world, "alpha").open(envelope, named: "c", now: world.clock.now, replayGuard: &replayGuard)
        #expect(replayed.descriptor.channelID == first.descriptor.channelID)
        // ...and the window refuses it: the host wrote d's id into the
        // header, which an endpoint compares with its descriptor's at open
        // (the end-to-end replay test opens it through the binaries).
        var header = [UInt8](repeating: 0, count: RingGeometry.pageSize)
        try header.withUnsafeMutableBytes { page in
            let frame = try #require(new.initiator.backingGFNs.first)
            let entry = try #require(try world.engine.translate(new.initiator.domain, view: nil, gfn: frame))
            page.copyBytes(from: world.engine.memory.read(entry.mfn, offset: 0, count: RingGeometry.pageSize))
            let control = ControlPage(base: page.baseAddress!)
            #expect(control.headerNames(channelID: second.descriptor.channelID.bytes))
            #expect(!control.headerNames(channelID: first.descriptor.channelID.bytes))
        }
        // A name's newest generation under another channel id, and an
        // older generation, stay refused.
        #expect(throws: DescriptorError.replayed) {
            var guardCopy = replayGuard
            guardCopy.accept(second.descriptor)
            var renamed = first.descriptor
            renamed.name = "d"
            renamed.generation = second.descriptor.generation
            if guardCopy.isReplay(renamed) { throw DescriptorError.replayed }
        }
    }

    @Test("an envelope addressed to another domain is refused by its signed header, before its box is tried")
    func headerNamesAnotherDomain() throws {
        let (world, channel, envelope) = try made()
        var fresh = DescriptorReplayGuard()
        // beta's own key and domain: the box is alpha's and would not open
        // (notForThisKey); the header says so first.
        #expect(throws: DescriptorError.wrongRecipient) {
            try opener(world, "beta").open(envelope, named: "c", now: world.clock.now, replayGuard: &fresh)
        }
        let betaEnvelope = try world.host.readDescriptor(for: channel.responder.domain, name: "c", as: channel.responder.domain)
        #expect(try opener(world, "beta").open(betaEnvelope, named: "c", now: world.clock.now, replayGuard: &fresh).descriptor.recipient
                == channel.responder.domain)
    }

    @Test("a signed envelope with a bad descriptor or version names the problem")
    func signedButMalformed() throws {
        let hostKey = Curve25519.Signing.PrivateKey()
        let agent = Curve25519.KeyAgreement.PrivateKey()
        func envelope(_ plaintext: [UInt8], version: UInt16 = DescriptorEnvelope.version) throws -> [UInt8] {
            let box = try AnonymousSealedBox.seal(plaintext, to: agent.publicKey)
            var signed = DescriptorEnvelope.signedPortion(recipient: 3, sealedBox: box)
            signed[4] = UInt8(version & 0xFF)
            return DescriptorEnvelope.assemble(signedPortion: signed, signature: hostKey.signature(for: signed))
        }
        let opener = DescriptorOpener(hostKey: hostKey.publicKey, agentKey: agent, domain: 3)
        var replayGuard = DescriptorReplayGuard()
        var bad = sampleDescriptor()
        bad.pageCount = 1
        #expect(throws: DescriptorError.malformed("window.pageCount")) {
            try opener.open(try envelope(bad.encoded()), named: "orders_v1", now: 2000, replayGuard: &replayGuard)
        }
        var future = sampleDescriptor().encoded()
        future[4] = 2
        #expect(throws: DescriptorError.unsupportedVersion) {
            try opener.open(try envelope(future), named: "orders_v1", now: 2000, replayGuard: &replayGuard)
        }
        #expect(throws: DescriptorError.unsupportedVersion) {
            try opener.open(try envelope(sampleDescriptor().encoded(), version: 2), named: "orders_v1", now: 2000, replayGuard: &replayGuard)
        }
        let good = try opener.open(try envelope(sampleDescriptor().encoded()), named: "orders_v1", now: 2000, replayGuard: &replayGuard)
        #expect(good.descriptor.name == "orders_v1")
        // Sealed to this agent but naming another domain inside.
        #expect(throws: DescriptorError.wrongRecipient) {
            try opener.open(try envelope(sampleDescriptor(recipient: 9, generation: 8).encoded()), named: "orders_v1", now: 2000, replayGuard: &replayGuard)
        }
    }
}
