"""SecureChannel from Python, through libsecurechannel's C interface with
ctypes (no compiled extension).

    from securechannel import Channel

    with Channel.open("orders", domain="left", key_file="left.key",
                      host_key_hex=HOST_KEY, state_dir=STATE) as channel:
        channel.send(b"ping")
        reply = channel.recv(timeout_ms=1000)

Errors raise SecureChannelError with the SC_E* name, the code, and the
library's details (sc_last_error). A Channel is used by one thread at a
time, as in C. The library is found as libsecurechannel.so.1 on the
loader's path, or at $SECURECHANNEL_LIB.
"""
import ctypes
import os

# The SC_E* constants of securechannel.h.
ERRORS = {
    -1: "SC_ETIMEDOUT", -2: "SC_EPEERCLOSED", -3: "SC_EPEERDIED", -4: "SC_EPROTO",
    -5: "SC_EAUTH", -6: "SC_EDESCRIPTOR", -7: "SC_ETOOBIG", -8: "SC_EPLATFORM", -9: "SC_EINVAL",
}
globals().update({name: code for code, name in ERRORS.items()})


class _Options(ctypes.Structure):
    # sc_options, field for field.
    _fields_ = [
        ("domain", ctypes.c_char_p), ("key_file", ctypes.c_char_p), ("host_key_hex", ctypes.c_char_p),
        ("backend", ctypes.c_char_p), ("state_dir", ctypes.c_char_p), ("wait", ctypes.c_char_p),
        ("timeout_ms", ctypes.c_int),
    ]


def _load():
    lib = ctypes.CDLL(os.environ.get("SECURECHANNEL_LIB", "libsecurechannel.so.1"))
    signatures = {
        "sc_options_init": (None, [ctypes.POINTER(_Options)]),
        "sc_open": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(ctypes.c_int)]),
        "sc_send": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]),
        "sc_recv": (ctypes.c_long, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]),
        "sc_max_message": (ctypes.c_size_t, [ctypes.c_void_p]),
        "sc_fd": (ctypes.c_int, [ctypes.c_void_p]),
        "sc_close": (ctypes.c_int, [ctypes.c_void_p]),
        "sc_strerror": (ctypes.c_char_p, [ctypes.c_int]),
        "sc_last_error": (ctypes.c_char_p, []),
        "sc_version": (ctypes.c_char_p, []),
    }
    for name, (result, arguments) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = result, arguments
    return lib


_lib = _load()


def version():
    return _lib.sc_version().decode()


class SecureChannelError(Exception):
    """A failed call: `code` is the SC_E* value, `name` its name."""

    def __init__(self, call, code):
        self.code = code
        self.name = ERRORS.get(code, str(code))
        self.detail = _lib.sc_last_error().decode(errors="replace")
        super().__init__(f"{call}: {self.name}: {_lib.sc_strerror(code).decode()} ({self.detail})")


def _text(value):
    return None if value is None else os.fsencode(value)


class Channel:
    """An open channel (sc_open); close it (or use `with`) before exiting."""

    def __init__(self, handle):
        self._handle = handle
        self.max_message = _lib.sc_max_message(handle)
        # Receives go into this one buffer: nothing is allocated per call
        # on the C side; Python copies the bytes out.
        self._buffer = ctypes.create_string_buffer(self.max_message)

    @classmethod
    def open(cls, name, *, domain=None, key_file, host_key_hex, backend=None, state_dir=None,
             wait=None, timeout_ms=10000):
        options = _Options()
        _lib.sc_options_init(ctypes.byref(options))
        options.domain, options.key_file, options.host_key_hex = _text(domain), _text(key_file), _text(host_key_hex)
        options.backend, options.state_dir, options.wait = _text(backend), _text(state_dir), _text(wait)
        options.timeout_ms = timeout_ms
        error = ctypes.c_int(0)
        handle = _lib.sc_open(_text(name), ctypes.byref(options), ctypes.byref(error))
        if not handle:
            raise SecureChannelError("sc_open", error.value)
        return cls(handle)

    def send(self, data, timeout_ms=-1):
        """Sends one message (bytes-like); waits for room up to timeout_ms (-1: indefinitely)."""
        result = _lib.sc_send(self._live(), bytes(data), len(data), timeout_ms)
        if result != 0:
            raise SecureChannelError("sc_send", result)

    def recv(self, timeout_ms=-1):
        """The next message as bytes; SecureChannelError SC_ETIMEDOUT if none came in time."""
        n = _lib.sc_recv(self._live(), self._buffer, self.max_message, timeout_ms)
        if n < 0:
            raise SecureChannelError("sc_recv", n)
        return self._buffer.raw[:n]

    def fileno(self):
        """sc_fd: for select/poll (readable when a message may be waiting; see securechannel.h)."""
        fd = _lib.sc_fd(self._live())
        if fd < 0:
            raise SecureChannelError("sc_fd", fd)
        return fd

    def close(self):
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        result = _lib.sc_close(handle)
        if result != 0:
            raise SecureChannelError("sc_close", result)

    def _live(self):
        if self._handle is None:
            raise SecureChannelError("channel", SC_EINVAL)
        return self._handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
