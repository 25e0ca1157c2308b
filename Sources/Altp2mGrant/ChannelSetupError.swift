import Altp2m
import ChannelCrypto

/// Why ``GrantModule/createChannel(_:)`` failed: the step that failed, the
/// cause (with the hypervisor's error number when it was the hypervisor),
/// and a sentence naming the domain, view or gfn involved and, where there is
/// one, the fix.
///
/// Every step done before the failure has been undone when this is thrown;
/// if undoing itself failed, the detail says what is left.
///
/// ```swift
/// do { try grants.createChannel(request) }
/// catch .step(.remapWindow, .hypervisor(XenErrno.notFound), let detail) { ... }
/// ```
public enum ChannelSetupError: Error, Sendable, CustomStringConvertible {
    /// `step` failed because of `cause`; `detail` says what and where.
    case step(SetupStep, SetupFailure, String)

    /// The step that failed.
    public var failedStep: SetupStep {
        switch self { case .step(let step, _, _): step }
    }

    /// The cause.
    public var cause: SetupFailure {
        switch self { case .step(_, let cause, _): cause }
    }

    /// The human-readable explanation.
    public var detail: String {
        switch self { case .step(_, _, let detail): detail }
    }

    /// A policy refusal is the detail alone (it is a complete sentence with
    /// its fix); every other failure is `"<step>: <cause>: <detail>"`.
    public var description: String {
        switch self {
        case .step(_, .denied, let detail):
            detail
        case .step(let step, let cause, let detail):
            "channel set-up failed at \(step): \(cause): \(detail)"
        }
    }
}

/// The steps of channel creation, in the order they run.
public enum SetupStep: String, Sendable, CaseIterable, CustomStringConvertible {
    /// The request, the policy, the domains and the agent keys are checked.
    case policy
    /// altp2m is activated on a domain that did not have it active.
    case activateAltp2m
    /// The domain's channel view is found or created.
    case channelView
    /// `access_required` is set, so that a stray access is never relaxed silently.
    case accessRequired
    /// The channel view is made visible.
    case visibility
    /// #VE (and with it hardware VMFUNC) is enabled on every vCPU.
    case enableNotify
    /// The shared frames are obtained.
    case sharedFrames
    /// The window's gfns are reserved in a domain.
    case reserveWindow
    /// The window and backing gfns are made inaccessible outside the channel view.
    case lockOut
    /// The window is remapped onto the shared frames in the channel view.
    case remapWindow
    /// Suppress-#VE is cleared on the locked-out gfns.
    case suppressVE
    /// The notification port is allocated.
    case notificationPort
    /// The descriptors are built, sealed and signed.
    case sealDescriptors
    /// The control page header is written into the first frame.
    case controlPage
    /// The descriptors are published for their domains.
    case publish
    /// The channel is recorded in the registry.
    case registry

    public var description: String { rawValue }
}

/// What made a set-up step fail.
public enum SetupFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The hypervisor (or the simulator) refused with this error number.
    case hypervisor(XenErrno)
    /// The policy does not allow the request.
    case denied
    /// The request itself is wrong (bad name, page count, unknown domain, ...).
    case invalidRequest
    /// A cryptographic operation failed.
    case crypto(CryptoError)
    /// A file in the state directory could not be read or written.
    case storage(String)
    /// The hypervisor accepted every call, but the result is not what the
    /// channel needs (found when the grant module checks its work).
    case verification

    public var description: String {
        switch self {
        case .hypervisor(let errno): "hypervisor error \(errno)"
        case .denied: "denied by policy"
        case .invalidRequest: "invalid request"
        case .crypto(let error): "crypto error: \(error)"
        case .storage(let what): "state directory: \(what)"
        case .verification: "verification failed"
        }
    }
}

/// Why a grant-module operation other than creation failed.
public enum GrantError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The state directory cannot be used; the text names the path and the fix.
    case stateDirectory(String)
    /// `policy.json` is malformed; the text names the rule and key.
    case policyFile(String)
    /// A key could not be read, written or parsed.
    case keys(String)
    /// The registry could not be read or written.
    case registry(String)
    /// No channel has this name.
    case noSuchChannel(String)
    /// No domain has this name or id.
    case noSuchDomain(String)
    /// The hypervisor refused a call the operation cannot do without.
    case hypervisor(XenErrno, String)
    /// An argument is out of range.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .stateDirectory(let text), .policyFile(let text), .keys(let text), .registry(let text),
             .invalidArgument(let text):
            text
        case .noSuchChannel(let name):
            "no channel named '\(name)'; run: chanctl channel list"
        case .noSuchDomain(let name):
            "no domain named '\(name)'; run: chanctl domain list"
        case .hypervisor(let errno, let what):
            "\(what): \(errno)"
        }
    }
}
