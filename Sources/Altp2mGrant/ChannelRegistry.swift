import Altp2m
import FoundationEssentials

/// Where the channel registry is kept. The grant module writes the whole
/// registry at once after every change; an implementation must make each
/// write atomic (all of the new contents or none of them).
public protocol RegistryStorage: AnyObject {
    /// The last contents saved, or `nil` if nothing was ever saved.
    func load() throws(GrantError) -> [UInt8]?
    /// Replaces the contents.
    func save(_ contents: [UInt8]) throws(GrantError)
}

/// The registry in a file (`channels.json` in the state directory), replaced
/// by an atomic rename after an `fsync`, so a crash leaves the old or the new
/// registry and never a torn one.
public final class FileRegistryStorage: RegistryStorage {
    /// The registry file.
    public let path: String

    /// Keeps the registry at `path`.
    public init(path: String) { self.path = path }

    public func load() throws(GrantError) -> [UInt8]? { try StateFiles.read(path) }

    public func save(_ contents: [UInt8]) throws(GrantError) { try StateFiles.writeAtomically(path, contents) }
}

/// One end of a channel as the registry keeps it.
struct SideState: Equatable, Sendable {
    var domain: DomainID
    var domainName: String
    /// The domain's channel view.
    var view: ViewID
    /// The first window gfn, once reserved.
    var windowFirstGFN: GFN?
    /// Where this domain's host p2m maps the shared frames.
    var backing: [GFN] = []
    /// The host p2m access of the window gfns, then of the backing gfns,
    /// before the lock-out (restored at teardown).
    var originalAccess: [MemAccess] = []
    /// Whether the lock-out and remap were started (teardown reverts them).
    var applied = false
    /// How many agent processes of this side that had the window mapped
    /// went away while the channel stayed (the control page's
    /// `HostField.processExits`; kept here because the host only writes it).
    var processExits: UInt32 = 0

    /// The window's gfns, or none before the window is reserved.
    func windowGFNs(pageCount: Int) -> [GFN] {
        guard let first = windowFirstGFN else { return [] }
        return (0..<pageCount).map { first.advanced(by: $0) }
    }
}

/// A channel as the registry keeps it (also the work record of a creation
/// in progress, so that undoing a failed creation and destroying a channel
/// are the same code).
struct ChannelState: Equatable, Sendable {
    var id: ChannelID
    var name: String
    var pageCount: Int
    var isOneWay: Bool
    var suite: ChannelDescriptor.CipherSuite
    var mode: ChannelDescriptor.Mode
    var createdAt: UInt64
    var expiresAt: UInt64
    var generation: UInt64
    /// When its descriptors were last issued again (Unix seconds); nil
    /// while they are the ones issued at creation.
    var reissuedAt: UInt64? = nil
    var frames: SharedFrames?
    var port: UInt32?
    /// The initiator (lower domain id), then the responder.
    var sides: [SideState]
    /// The domains a descriptor was published for.
    var published: [DomainID] = []
    /// Whether the control page header was written.
    var controlPageWritten = false

    var initiator: SideState { sides[0] }
    var responder: SideState { sides[1] }

    func side(of domain: DomainID) -> SideState? { sides.first { $0.domain == domain } }
    func involves(_ domain: DomainID) -> Bool { sides.contains { $0.domain == domain } }
}

/// What the grant module did to a domain for all of its channels together.
struct DomainState: Equatable, Sendable {
    var domain: DomainID
    var name: String
    /// The domain's one channel view.
    var view: ViewID
    /// altp2m was inactive and the grant module activated it.
    var activatedByUs: Bool
    /// How `access_required` stood before the domain's first channel:
    /// recorded once, when the domain gets it, and kept while the domain
    /// has channels (the later ones find the flag set by the grant module).
    var accessRequired: AccessRequiredOrigin
    /// vCPUs whose #VE the grant module enabled, with their info pages.
    var notifyPages: [VCPUID: GFN] = [:]
}

/// The shared frames of a destroyed channel that stay shared, scrubbed and
/// locked out (`n` in every view) until no domain that holds them has a
/// channel left: releasing them drops backing gfns (on Xen the mapping
/// side's grant unmap is `p2m_remove_page`), and a drop inside the remapped
/// range of a domain's channel view resets that view
/// (`p2m_altp2m_propagate_change` → `p2m_reset_altp2m`), taking the windows
/// of the domain's other channels with it.
struct ParkedFrames: Equatable, Sendable {
    /// The channel they belonged to (for messages).
    var channel: String
    var pageCount: Int
    var frames: SharedFrames
    /// Both sides as the channel left them (their backing access is restored
    /// when the frames go).
    var sides: [SideState]

    /// Whether the frames may go now: no live domain holding them has a channel.
    func isIdle(alive: Set<DomainID>, channelsOf: (DomainID) -> Int) -> Bool {
        [frames.first, frames.second].allSatisfy { !alive.contains($0) || channelsOf($0) == 0 }
    }
}

/// The registry's contents.
struct RegistryContents: Equatable, Sendable {
    var channels: [String: ChannelState] = [:]
    var domains: [DomainID: DomainState] = [:]
    /// Frames of destroyed channels kept until their domains' channels are gone.
    var parked: [ParkedFrames] = []
    /// The generation of the next descriptor the host issues.
    var nextGeneration: UInt64 = 1

    func channels(of domain: DomainID) -> [ChannelState] {
        channels.values.filter { $0.involves(domain) }.sorted { $0.name < $1.name }
    }
}

/// The channel registry: the contents in memory and a durable copy in
/// ``RegistryStorage``. Every change is written before it takes effect in
/// memory, so memory never claims more than the storage holds.
final class ChannelRegistry {
    private(set) var contents: RegistryContents
    let storage: any RegistryStorage

    init(storage: any RegistryStorage) throws(GrantError) {
        self.storage = storage
        if let bytes = try storage.load() {
            contents = try RegistryFormat.decode(bytes)
        } else {
            contents = RegistryContents()
        }
    }

    /// Applies `change` to a copy, saves the copy, then adopts it. If the
    /// save fails, nothing changes.
    func commit(_ change: (inout RegistryContents) -> Void) throws(GrantError) {
        var updated = contents
        change(&updated)
        try storage.save(RegistryFormat.encode(updated))
        contents = updated
    }

    /// Takes the next descriptor generation and records it as taken before
    /// any descriptor carries it, so a generation is issued at most once even
    /// when a later step fails. An agent accepts each (channel, generation)
    /// once: a generation published, lost by a failed commit and published
    /// again would be refused as a replay by an agent that saw it the first time.
    func reserveGeneration() throws(GrantError) -> UInt64 {
        let generation = contents.nextGeneration
        try commit { $0.nextGeneration = max($0.nextGeneration, generation + 1) }
        return generation
    }
}

/// The JSON form of the registry (`channels.json`).
enum RegistryFormat {
    static let version = 1

    struct Document: Codable {
        var version: Int
        var nextGeneration: UInt64
        var channels: [Channel]
        var domains: [Domain]
        /// Absent in registries written before it existed, and when empty.
        var parked: [Parked]?
    }

    struct Parked: Codable {
        var channel: String
        var pageCount: Int
        var sides: [Side]
    }

    struct Channel: Codable {
        var id: String
        var name: String
        var pageCount: Int
        var oneWay: Bool
        var suite: String
        var mode: String
        var createdAt: UInt64
        var expiresAt: UInt64
        var generation: UInt64
        /// Absent in registries written before re-issues were recorded.
        var reissuedAt: UInt64?
        var port: UInt32?
        var sides: [Side]
        var published: [UInt16]
        var controlPageWritten: Bool
    }

    struct Side: Codable {
        var domain: UInt16
        var domainName: String
        var view: UInt16
        var windowFirstGFN: UInt64?
        var backing: [UInt64]
        var originalAccess: [String]
        var applied: Bool
        /// Absent in registries written before it existed: 0.
        var processExits: UInt32?
    }

    struct Domain: Codable {
        var domain: UInt16
        var name: String
        var view: UInt16
        var activatedByUs: Bool
        /// An ``AccessRequiredOrigin``; absent in registries written before
        /// it existed, which have only `accessRequiredByUs`.
        var accessRequiredOrigin: String?
        /// Still written (`true` only for ``AccessRequiredOrigin/grantModule``),
        /// so that a build from before origins reads the registry and clears
        /// only what the grant module set.
        var accessRequiredByUs: Bool?
        var notifyPages: [NotifyPage]
    }

    struct NotifyPage: Codable {
        var vcpu: UInt32
        var gfn: UInt64
    }

    static func encode(_ side: SideState) -> Side {
        Side(domain: side.domain.rawValue, domainName: side.domainName, view: side.view.rawValue,
             windowFirstGFN: side.windowFirstGFN?.rawValue,
             backing: side.backing.map(\.rawValue),
             originalAccess: side.originalAccess.map(\.description), applied: side.applied,
             processExits: side.processExits == 0 ? nil : side.processExits)
    }

    static func decode(_ side: Side, entry: String) throws(GrantError) -> SideState {
        let access = side.originalAccess.compactMap { MemAccess($0) }
        guard access.count == side.originalAccess.count else {
            throw .registry("the channel registry entry '\(entry)' has an unknown access type")
        }
        return SideState(domain: DomainID(rawValue: side.domain), domainName: side.domainName,
                         view: ViewID(side.view), windowFirstGFN: side.windowFirstGFN.map { GFN($0) },
                         backing: side.backing.map { GFN($0) }, originalAccess: access,
                         applied: side.applied, processExits: side.processExits ?? 0)
    }

    /// The recorded origin, or the one an older registry's
    /// `accessRequiredByUs` stands for.
    static func accessRequiredOrigin(of state: Domain) throws(GrantError) -> AccessRequiredOrigin {
        if let text = state.accessRequiredOrigin {
            guard let origin = AccessRequiredOrigin(rawValue: text) else {
                throw .registry("the channel registry's domain '\(state.name)' has an unknown accessRequiredOrigin '\(text)' (expected grant-module, found-set or unknown); correct it, or restore the registry from a backup")
            }
            return origin
        }
        guard let byUs = state.accessRequiredByUs else {
            throw .registry("the channel registry's domain '\(state.name)' says neither accessRequiredOrigin nor accessRequiredByUs; add \"accessRequiredOrigin\": \"unknown\" to leave access_required on when its last channel goes, or restore the registry from a backup")
        }
        return AccessRequiredOrigin(accessRequiredByUs: byUs)
    }

    static func encode(_ contents: RegistryContents) -> [UInt8] {
        let document = Document(
            version: version, nextGeneration: contents.nextGeneration,
            channels: contents.channels.values.sorted { $0.name < $1.name }.map { channel in
                Channel(id: channel.id.hex, name: channel.name, pageCount: channel.pageCount,
                        oneWay: channel.isOneWay, suite: channel.suite.description, mode: channel.mode.description,
                        createdAt: channel.createdAt, expiresAt: channel.expiresAt, generation: channel.generation,
                        reissuedAt: channel.reissuedAt, port: channel.port, sides: channel.sides.map(encode),
                        published: channel.published.map(\.rawValue), controlPageWritten: channel.controlPageWritten)
            },
            domains: contents.domains.values.sorted { $0.domain < $1.domain }.map { state in
                Domain(domain: state.domain.rawValue, name: state.name, view: state.view.rawValue,
                       activatedByUs: state.activatedByUs, accessRequiredOrigin: state.accessRequired.rawValue,
                       accessRequiredByUs: state.accessRequired == .grantModule,
                       notifyPages: state.notifyPages.sorted { $0.key < $1.key }.map {
                           NotifyPage(vcpu: $0.key.rawValue, gfn: $0.value.rawValue)
                       })
            },
            parked: contents.parked.isEmpty ? nil : contents.parked.map { parked in
                Parked(channel: parked.channel, pageCount: parked.pageCount, sides: parked.sides.map(encode))
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // Plain integers, strings and booleans: encoding cannot fail.
        let data = (try? encoder.encode(document)) ?? Data()
        return Array(data) + [UInt8(ascii: "\n")]
    }

    static func decode(_ bytes: [UInt8]) throws(GrantError) -> RegistryContents {
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: Data(bytes))
        } catch {
            throw .registry("the channel registry is unreadable (\(error)); restore it from a backup, or move it aside to start empty (the hypervisor state of the channels it listed is then yours to clean up)")
        }
        guard document.version == version else {
            throw .registry("the channel registry has format version \(document.version); this build reads \(version)")
        }
        var contents = RegistryContents(nextGeneration: document.nextGeneration)
        for channel in document.channels {
            guard let id = ChannelID(hex: channel.id),
                  let suite = ChannelDescriptor.CipherSuite(channel.suite),
                  let mode = ChannelDescriptor.Mode(channel.mode),
                  channel.sides.count == 2,
                  channel.sides[0].backing.count == channel.sides[1].backing.count else {
                throw .registry("the channel registry entry '\(channel.name)' is malformed")
            }
            var sides: [SideState] = []
            for side in channel.sides { sides.append(try decode(side, entry: channel.name)) }
            let frames: SharedFrames? = sides[0].backing.isEmpty ? nil
                : SharedFrames(first: sides[0].domain, second: sides[1].domain,
                               firstGFNs: sides[0].backing, secondGFNs: sides[1].backing)
            contents.channels[channel.name] = ChannelState(
                id: id, name: channel.name, pageCount: channel.pageCount, isOneWay: channel.oneWay, suite: suite,
                mode: mode, createdAt: channel.createdAt, expiresAt: channel.expiresAt,
                generation: channel.generation, reissuedAt: channel.reissuedAt, frames: frames, port: channel.port, sides: sides,
                published: channel.published.map { DomainID(rawValue: $0) },
                controlPageWritten: channel.controlPageWritten)
        }
        for state in document.domains {
            var pages: [VCPUID: GFN] = [:]
            for page in state.notifyPages { pages[VCPUID(page.vcpu)] = GFN(page.gfn) }
            contents.domains[DomainID(rawValue: state.domain)] = DomainState(
                domain: DomainID(rawValue: state.domain), name: state.name, view: ViewID(state.view),
                activatedByUs: state.activatedByUs, accessRequired: try accessRequiredOrigin(of: state),
                notifyPages: pages)
        }
        for parked in document.parked ?? [] {
            var sides: [SideState] = []
            for side in parked.sides { sides.append(try decode(side, entry: parked.channel)) }
            guard sides.count == 2, !sides[0].backing.isEmpty, sides[0].backing.count == sides[1].backing.count else {
                throw .registry("the channel registry's parked frames of '\(parked.channel)' are malformed")
            }
            contents.parked.append(ParkedFrames(
                channel: parked.channel, pageCount: parked.pageCount,
                frames: SharedFrames(first: sides[0].domain, second: sides[1].domain,
                                     firstGFNs: sides[0].backing, secondGFNs: sides[1].backing),
                sides: sides))
        }
        return contents
    }
}
