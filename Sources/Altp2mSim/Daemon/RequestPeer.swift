/// The process that sent the request the daemon is answering, from the
/// kernel (SO_PEERCRED), not from anything the client says: what an
/// extension records as the requester (the grant module's audit log).
public struct RequestPeer: Sendable, Equatable {
    /// The client's process id.
    public let pid: Int32
    /// The client's user id.
    public let uid: UInt32

    public init(pid: Int32, uid: UInt32) {
        self.pid = pid
        self.uid = uid
    }

    init?(_ connection: Connection) {
        guard let pid = connection.peerPID, let uid = connection.peerUID else { return nil }
        self.init(pid: pid, uid: uid)
    }
}

extension SimDaemon {
    /// Who sent the request being answered; nil outside a request (and for
    /// a connection whose credentials the kernel did not give).
    public var currentRequestPeer: RequestPeer? { requestPeer }
}
