import Altp2m

/// A set-up step's failure while it is being built into a ``ChannelSetupError``.
struct StepFailure: Error {
    var step: SetupStep
    var cause: SetupFailure
    var detail: String

    init(_ step: SetupStep, _ cause: SetupFailure, _ detail: String) {
        self.step = step
        self.cause = cause
        self.detail = detail
    }
}

/// Runs one hypervisor call as part of `step`, turning its error number into
/// a ``StepFailure`` that says what was being done.
@inline(__always)
func during<R>(_ step: SetupStep, _ what: @autoclosure () -> String,
               _ body: () throws(XenErrno) -> R) throws(StepFailure) -> R {
    do { return try body() } catch { throw StepFailure(step, .hypervisor(error), what()) }
}

/// Compact text for a list of gfns: `0x100000+4` for a run, else the list.
func describe(_ gfns: [GFN]) -> String {
    guard let first = gfns.first else { return "no gfns" }
    if gfns.enumerated().allSatisfy({ $0.element == first.advanced(by: $0.offset) }) {
        return gfns.count == 1 ? "\(first)" : "\(first)+\(gfns.count)"
    }
    return gfns.map(\.description).joined(separator: ",")
}

/// Splits gfns into runs of consecutive numbers (for the `_multi` calls
/// that take a first and a last gfn).
func consecutiveRuns(_ gfns: [GFN]) -> [ClosedRange<GFN>] {
    var runs: [ClosedRange<GFN>] = []
    for gfn in gfns.sorted() {
        if let last = runs.last, last.upperBound.advanced(by: 1) == gfn {
            runs[runs.count - 1] = last.lowerBound...gfn
        } else {
            runs.append(gfn...gfn)
        }
    }
    return runs
}

/// The altp2m work of one end of a channel: lock the window and backing gfns
/// out of every view but the channel view, remap the window onto the shared
/// frames in the channel view, and undo both.
///
/// Why it is done in this order (spec references are to
/// shared/docs/altp2m-model.md):
/// 1. The **host** p2m gets access `n` on every window and backing gfn
///    (`set_mem_access` with index 0 is the host, §2.3). A host write
///    propagates to every view that already holds the gfn (§5.3), and on Xen
///    4.17 a lazy copy into any view, view 0's table included, takes the host
///    entry's access (§4.1): so every view that ever touches these gfns sees
///    `n`. It must come first because a host write at a window gfn would
///    also overwrite the remap in the channel view (S56).
/// 2. Every other active view gets its own `n` entries (prepopulated from
///    the host), so the lock-out does not depend on lazy copy.
/// 3. From Xen 4.19 a lazy copy takes the view's default access instead
///    (commit 7e5b662b28), and `set_mem_access(0, …)` cannot reach view 0's
///    table: the only way to give that table an entry is `change_gfn(0, g, g)`,
///    which copies the host entry (`n`) in. Done only there, since it widens
///    view 0's remapped range (a later drop of those gfns resets view 0).
/// 4. The channel view: the backing gfns get `n` (so the view reaches the
///    frames only through the window), each window gfn is remapped onto its
///    backing gfn (`change_gfn`, which copies the target's access, hence
///    last), and the window gets `rw`.
/// 5. Where the CPU has #VE, suppress-#VE is cleared on the locked-out
///    entries of the other views and on the backing gfns in the channel view,
///    so a stray access becomes a #VE in the guest. View 0's table keeps
///    sve = 1 (dom0 cannot clear it, §4.4): a stray access there exits to
///    Xen, and with `access_required` set (done per domain) it becomes an
///    event or crashes the domain; it is never relaxed silently (§4.3).
extension GrantModule {
    /// Applies the lock-out and the remap for one end, then checks the result.
    func applyWindow(_ side: SideState, pageCount: Int) throws(StepFailure) {
        let domain = side.domain
        let who = "\(side.domainName) (\(domain))"
        let window = side.windowGFNs(pageCount: pageCount)
        let backing = side.backing
        let all = window + backing
        let views = try during(.lockOut, "\(who): listing active views") { () throws(XenErrno) in
            try host.activeViews(domain)
        }
        let others = views.map(\.view).filter { $0 != .hostOrView0 && $0 != side.view }
        let denied = all.map { (gfn: $0, access: MemAccess.none) }

        try during(.lockOut, "\(who): host p2m access n on window \(describe(window)) and backing \(describe(backing))") {
            () throws(XenErrno) in try host.setMemAccessMulti(domain, view: .hostOrView0, entries: denied)
        }
        for view in others {
            try during(.lockOut, "\(who): access n on the channel gfns in \(view)") { () throws(XenErrno) in
                try host.setMemAccessMulti(domain, view: view, entries: denied)
            }
        }
        if host.xenVersion.lazyCopyUsesViewDefault {
            for gfn in all {
                try during(.lockOut, "\(who): pinning \(gfn) into view 0's table (change_gfn 0, \(gfn), \(gfn))") {
                    () throws(XenErrno) in try host.changeGFN(domain, view: .hostOrView0, oldGFN: gfn, newGFN: gfn)
                }
            }
        }

        try during(.remapWindow, "\(who): access n on backing \(describe(backing)) in the channel \(side.view)") {
            () throws(XenErrno) in
            try host.setMemAccessMulti(domain, view: side.view, entries: backing.map { ($0, MemAccess.none) })
        }
        for (gfn, target) in zip(window, backing) {
            try during(.remapWindow, "\(who): change_gfn(\(side.view), \(gfn) -> \(target))") { () throws(XenErrno) in
                try host.changeGFN(domain, view: side.view, oldGFN: gfn, newGFN: target)
            }
        }
        try during(.remapWindow, "\(who): access rw on window \(describe(window)) in the channel \(side.view)") {
            () throws(XenErrno) in
            try host.setMemAccessMulti(domain, view: side.view, entries: window.map { ($0, MemAccess.readWrite) })
        }

        if host.supportsVirtualizationExceptions {
            let targets = others.map { ($0, all) } + [(side.view, backing)]
            for (view, gfns) in targets {
                for run in consecutiveRuns(gfns) {
                    let result = try during(.suppressVE, "\(who): clearing suppress-#VE on \(run.lowerBound)...\(run.upperBound) in \(view)") {
                        () throws(XenErrno) in
                        try host.setSuppressVEMulti(domain, view: view, firstGFN: run.lowerBound,
                                                    lastGFN: run.upperBound, suppress: false)
                    }
                    // ESRCH: a gfn the view holds no entry for and the host
                    // has no plain RAM at (a grant mapping on Xen); its lazy
                    // copy will have sve = 1 and the host's `n`, which exits
                    // to Xen instead: still never a silent success.
                    if let error = result.firstError, error != .notFound {
                        throw StepFailure(.suppressVE, .hypervisor(error),
                                          "\(who): suppress-#VE on \(result.firstErrorGFN ?? run.lowerBound) in \(view)")
                    }
                }
            }
        }

        let problems = verifyWindow(side, pageCount: pageCount)
        if !problems.isEmpty {
            throw StepFailure(.lockOut, .verification, problems.joined(separator: "; "))
        }
    }

    /// Checks what the hypervisor calls can show: the host p2m denies every
    /// window and backing gfn, the channel view maps the window `rw`, and
    /// every other view's own entries deny them (a view without an entry
    /// copies the host's `n` on Xen 4.17, or has view 0's pinned entry).
    /// - Returns: one sentence per problem.
    func verifyWindow(_ side: SideState, pageCount: Int) -> [String] {
        let domain = side.domain
        let who = "\(side.domainName) (\(domain))"
        let window = side.windowGFNs(pageCount: pageCount)
        let all = window + side.backing
        var problems: [String] = []
        func access(_ view: ViewID, _ gfn: GFN) -> Result<MemAccess, XenErrno> {
            Result { () throws(XenErrno) in try host.getMemAccess(domain, view: view, gfn: gfn) }
        }
        for gfn in all {
            if case let found = access(.hostOrView0, gfn), found != .success(.none) {
                problems.append("\(who): the host p2m gives \(gfn) \(found.text) instead of n")
            }
        }
        for gfn in window {
            if case let found = access(side.view, gfn), found != .success(.readWrite) {
                problems.append("\(who): the channel \(side.view) gives window gfn \(gfn) \(found.text) instead of rw")
            }
        }
        let views = (try? host.activeViews(domain)) ?? []
        if !views.contains(where: { $0.view == side.view }) {
            problems.append("\(who): the channel \(side.view) is no longer active")
        }
        for view in views.map(\.view) where view != .hostOrView0 && view != side.view {
            for gfn in all {
                switch access(view, gfn) {
                case .success(.none):
                    continue
                case .failure(.notFound) where !host.xenVersion.lazyCopyUsesViewDefault:
                    continue   // no entry yet: a lazy copy takes the host's n (Xen 4.17)
                case let other:
                    problems.append("\(who): \(view) gives \(gfn) \(other.text) instead of n")
                }
            }
        }
        return problems
    }

    /// Undoes the window half: the host p2m's window access is restored
    /// (a host write, which also overwrites the channel view's remap with the
    /// window's own frame, spec S56, so an agent still in the view sees that
    /// frame rather than a fault), then every view's entry for the window
    /// gfns is dropped (`change_gfn` to `INVALID_GFN`).
    func revertWindowGFNs(_ side: SideState, pageCount: Int, problems: inout [String]) {
        let window = side.windowGFNs(pageCount: pageCount)
        restoreHostAccess(side, gfns: window, originals: Array(side.originalAccess.prefix(window.count)),
                          problems: &problems)
        dropViewEntries(side, gfns: window, problems: &problems)
    }

    /// Undoes the backing half (after the frames were scrubbed): every view's
    /// entry for the backing gfns is dropped, then the host access restored.
    func revertBackingGFNs(_ side: SideState, pageCount: Int, problems: inout [String]) {
        dropViewEntries(side, gfns: side.backing, problems: &problems)
        let originals = side.originalAccess.count == pageCount + side.backing.count
            ? Array(side.originalAccess.suffix(side.backing.count)) : []
        restoreHostAccess(side, gfns: side.backing, originals: originals, problems: &problems)
    }

    private func restoreHostAccess(_ side: SideState, gfns: [GFN], originals: [MemAccess], problems: inout [String]) {
        guard !gfns.isEmpty else { return }
        // Without a record of the original (the failure came before it was
        // read) the host entries were never changed.
        guard originals.count == gfns.count else { return }
        let entries = zip(gfns, originals).map { (gfn: $0, access: $1) }
        note(&problems, "\(side.domainName) (\(side.domain)): restoring host access of \(describe(gfns))") {
            () throws(XenErrno) in try host.setMemAccessMulti(side.domain, view: .hostOrView0, entries: entries)
        }
    }

    private func dropViewEntries(_ side: SideState, gfns: [GFN], problems: inout [String]) {
        guard !gfns.isEmpty else { return }
        let views: [ActiveView]
        do {
            views = try host.activeViews(side.domain)
        } catch {
            problems.append("\(side.domainName) (\(side.domain)): cannot list views: \(error)")
            return
        }
        for view in views.map(\.view) {
            for gfn in gfns {
                note(&problems, "\(side.domainName) (\(side.domain)): dropping \(view)'s entry for \(gfn)") {
                    () throws(XenErrno) in try host.changeGFN(side.domain, view: view, oldGFN: gfn, newGFN: .invalid)
                }
            }
        }
    }

    /// Runs a teardown call, recording a failure instead of stopping.
    func note(_ problems: inout [String], _ what: @autoclosure () -> String, _ body: () throws(XenErrno) -> Void) {
        do { try body() } catch { problems.append("\(what()): \(error)") }
    }
}

extension Result where Success == MemAccess, Failure == XenErrno {
    /// `rw`, or the error's C name.
    var text: String {
        switch self {
        case .success(let access): "\(access)"
        case .failure(let error): "\(error.name)"
        }
    }
}
