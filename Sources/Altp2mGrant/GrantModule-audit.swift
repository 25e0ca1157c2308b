import Altp2m

extension GrantModule {
    /// The audit log's name in the state directory.
    public static let auditFile = "audit.log"

    /// Every record of the audit log, oldest first: what `chanctl audit show` prints.
    public func auditRecords() throws(GrantError) -> [AuditRecord] {
        try auditLog.records()
    }

    /// Runs one operation that changes policy, keys or channels and appends
    /// its record to the audit log, whether it succeeded or failed: who
    /// (``auditActor``), what, and the outcome. `resolved` gives what only
    /// the result knows (the domains' names, the generation).
    func audited<T, E: Error>(_ action: AuditAction, channel: String? = nil, domains: [String]? = nil,
                              details: [String: String]? = nil,
                              resolved: (T) -> (domains: [String]?, generation: UInt64?) = { _ in (nil, nil) },
                              _ body: () throws(E) -> T) throws(E) -> T {
        do {
            let result = try body()
            let known = resolved(result)
            audit(action, channel: channel, domains: known.domains ?? domains, details: details,
                  generation: known.generation, error: nil)
            return result
        } catch {
            audit(action, channel: channel, domains: domains, details: details, generation: nil, error: "\(error)")
            throw error
        }
    }

    /// Appends one record (`error` nil: the operation succeeded). A record
    /// that cannot be written does not undo the operation; the reason is
    /// kept in ``lastAuditFailure`` for the caller to report.
    func audit(_ action: AuditAction, channel: String?, domains: [String]?, details: [String: String]?,
               generation: UInt64?, error: String?) {
        let record = AuditRecord(time: AuditLog.timestamp(clock()), uid: auditActor.uid, user: auditActor.user,
                                 pid: auditActor.pid, action: action.rawValue, channel: channel, domains: domains,
                                 generation: generation, details: details,
                                 outcome: error == nil ? AuditRecord.succeeded : AuditRecord.failed, error: error)
        do {
            try auditLog.append(record)
            lastAuditFailure = nil
        } catch {
            lastAuditFailure = error.description
        }
    }
}
