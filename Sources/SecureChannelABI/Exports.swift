import CSecureChannelABI
import SecureChannel

// The functions of securechannel.h, exported with their C names (and only
// these: exports.map). Each checks its pointers, then calls into
// OpenChannel or ChannelOpener; no Swift error or trap crosses into C.
// The header documents every function; docs/C-API.md the whole contract.

@_cdecl("sc_options_init")
public func sc_options_init(_ opts: UnsafeMutablePointer<sc_options>?) {
    opts?.pointee = sc_options(domain: nil, key_file: nil, host_key_hex: nil, backend: nil, state_dir: nil, wait: nil,
                               timeout_ms: OpenRequest.defaultTimeoutMilliseconds)
}

@_cdecl("sc_open")
public func sc_open(_ name: UnsafePointer<CChar>?, _ opts: UnsafePointer<sc_options>?,
                    _ error: UnsafeMutablePointer<Int32>?) -> OpaquePointer? {
    do {
        let request = try OpenRequest(name: name, options: opts)
        let channel = try ChannelOpener(request: request).open()
        error?.pointee = 0
        return ChannelHandle.make(OpenChannel(channel: channel, onSimulator: request.backend == .sim))
    } catch let failure {
        error?.pointee = failure.report()
        return nil
    }
}

@_cdecl("sc_send")
public func sc_send(_ ch: OpaquePointer?, _ data: UnsafeRawPointer?, _ length: Int, _ timeoutMilliseconds: Int32) -> Int32 {
    guard let handle = ChannelHandle(ch, call: "sc_send") else { return SC_EINVAL }
    return handle.withChannel { $0.send(data, length: length, timeoutMilliseconds: timeoutMilliseconds) }
}

@_cdecl("sc_recv")
public func sc_recv(_ ch: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?, _ capacity: Int, _ timeoutMilliseconds: Int32) -> Int {
    guard let handle = ChannelHandle(ch, call: "sc_recv") else { return Int(SC_EINVAL) }
    return handle.withChannel { $0.receive(buffer, capacity: capacity, timeoutMilliseconds: timeoutMilliseconds) }
}

@_cdecl("sc_max_message")
public func sc_max_message(_ ch: OpaquePointer?) -> Int {
    guard let handle = ChannelHandle(ch, call: "sc_max_message") else { return 0 }
    return handle.withChannel { $0.maximumMessageBytes }
}

@_cdecl("sc_fd")
public func sc_fd(_ ch: OpaquePointer?) -> Int32 {
    guard let handle = ChannelHandle(ch, call: "sc_fd") else { return SC_EINVAL }
    return handle.withChannel { $0.descriptor() }
}

@_cdecl("sc_statistics")
public func sc_statistics(_ ch: OpaquePointer?, _ out: UnsafeMutableRawPointer?, _ size: Int) -> Int32 {
    guard let handle = ChannelHandle(ch, call: "sc_statistics") else { return SC_EINVAL }
    guard let out, size > 0 else {
        return ABIError.invalid("sc_statistics: \(out == nil ? "out is NULL" : "size is 0"); pass a sc_stats and sizeof it").report()
    }
    return handle.withChannel { $0.copyStatistics(to: UnsafeMutableRawBufferPointer(start: out, count: size)) }
}

@_cdecl("sc_close")
public func sc_close(_ ch: OpaquePointer?) -> Int32 {
    guard let handle = ChannelHandle(ch, call: "sc_close") else { return SC_EINVAL }
    return handle.close()
}

@_cdecl("sc_strerror")
public func sc_strerror(_ error: Int32) -> UnsafePointer<CChar> {
    StaticText.pointer(ErrorNames.message(error))
}

@_cdecl("sc_last_error")
public func sc_last_error() -> UnsafePointer<CChar> {
    LastError.current
}

@_cdecl("sc_version")
public func sc_version() -> UnsafePointer<CChar> {
    // The major number is the ABI version: the soname's (Package.swift).
    StaticText.pointer("securechannel 1.0.0")
}
