import CSecureChannelABI
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// A failure of a C call: its SC_E* code and the details sc_last_error
/// gives (what failed, and the fix).
struct ABIError: Error {
    let code: Int32
    let detail: String
    /// Set instead of `detail` where a failure is an everyday answer
    /// ("would block" on the data path): reporting it allocates nothing.
    let fixedDetail: StaticString?

    init(_ code: Int32, _ detail: String) {
        self.code = code
        self.detail = detail
        fixedDetail = nil
    }

    init(_ code: Int32, fixed detail: StaticString) {
        self.code = code
        self.detail = ""
        fixedDetail = detail
    }

    static func invalid(_ detail: String) -> ABIError { ABIError(SC_EINVAL, detail) }
    static func platform(_ detail: String) -> ABIError { ABIError(SC_EPLATFORM, detail) }
    static func descriptor(_ detail: String) -> ABIError { ABIError(SC_EDESCRIPTOR, detail) }

    /// A channel error, as the C interface names it; `context` says which
    /// call (and which channel) it came from.
    init(_ error: ChannelError, context: String) {
        let detail = "\(context): \(error)"
        switch error {
        case .timeout: self.init(SC_ETIMEDOUT, detail)
        case .peerClosed: self.init(SC_EPEERCLOSED, detail)
        case .peerDied: self.init(SC_EPEERDIED, detail)
        // The C interface keeps its codes: a restarted peer ends the session
        // as a dead one does (sc_open again reaches the new incarnation), and
        // a re-issue makes the descriptor in hand the wrong one.
        case .peerRestarted: self.init(SC_EPEERDIED, detail)
        case .descriptorsReissued: self.init(SC_EDESCRIPTOR, detail)
        // A session at a hard limit of its keys means the peer never
        // completed the renewal the protocol asked of it.
        case .protocolViolation, .handshakeFailed, .keyLimitReached: self.init(SC_EPROTO, detail)
        case .authenticationFailed:
            self.init(SC_EAUTH, detail + "; the peer holds other keys than the descriptor names, or someone altered its frames: re-register the peer's key and re-create the channel")
        case .descriptorRejected: self.init(SC_EDESCRIPTOR, detail)
        case .messageTooLarge, .bufferTooSmall: self.init(SC_ETOOBIG, detail)
        case .platform: self.init(SC_EPLATFORM, detail)
        case .closed, .receiveOnly, .sendOnly, .invalidArgument: self.init(SC_EINVAL, detail)
        }
    }

    /// Records the details for sc_last_error and returns the code.
    func report() -> Int32 {
        if let fixedDetail { LastError.set(fixed: fixedDetail) } else { LastError.set(detail) }
        return code
    }
}

/// sc_strerror's messages: one static string per code.
enum ErrorNames {
    static func message(_ code: Int32) -> StaticString {
        switch code {
        case 0...: "success"
        case SC_ETIMEDOUT: "timed out: the operation did not complete within its timeout (nothing was sent or received)"
        case SC_EPEERCLOSED: "the peer closed the channel (everything it sent was received)"
        case SC_EPEERDIED: "the peer is gone: its domain died or the host tore the channel down"
        case SC_EPROTO: "protocol violation by the peer: the channel is unusable"
        case SC_EAUTH: "authentication failed: the peer holds other keys, or a frame was forged, altered or replayed"
        case SC_EDESCRIPTOR: "descriptor rejected, or no channel of that name is published for this domain (sc_last_error says which check failed)"
        case SC_ETOOBIG: "message too large: see sc_max_message (a receive buffer of that size always suffices)"
        case SC_EPLATFORM: "platform error: no simulator or Xen, unknown domain, backend not in this build, or the state directory cannot be used (sc_last_error says which)"
        case SC_EINVAL: "invalid argument: a NULL pointer, a malformed key, an unknown option value, or a closed channel handle"
        default: "not a SecureChannel error code"
        }
    }
}

/// The details of the last failure on each thread (sc_last_error): a
/// string the thread owns (freed when the thread ends or fails again) or a
/// static one.
enum LastError {
    /// The current message, owned or static.
    private static let messageKey = makeKey(destructor: nil)
    /// The owned message, if the current one is: freed with the thread.
    private static let ownedKey = makeKey { free($0) }

    private static func makeKey(destructor: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?) -> pthread_key_t {
        var key = pthread_key_t()
        _ = pthread_key_create(&key, destructor)
        return key
    }

    static func set(_ message: String) {
        let copy = strdup(message)
        replace(with: UnsafeMutableRawPointer(copy), owned: true)
    }

    static func set(fixed message: StaticString) {
        replace(with: UnsafeMutableRawPointer(mutating: message.utf8Start), owned: false)
    }

    private static func replace(with message: UnsafeMutableRawPointer?, owned: Bool) {
        let old = pthread_getspecific(ownedKey)
        _ = pthread_setspecific(ownedKey, owned ? message : nil)
        _ = pthread_setspecific(messageKey, message)
        free(old)
    }

    /// The current thread's message, or "".
    static var current: UnsafePointer<CChar> {
        if let text = pthread_getspecific(messageKey) { return UnsafePointer(text.assumingMemoryBound(to: CChar.self)) }
        return StaticText.pointer("")
    }
}

enum StaticText {
    /// A string literal's bytes, NUL-terminated, in the library's read-only data.
    static func pointer(_ text: StaticString) -> UnsafePointer<CChar> {
        UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
    }
}
