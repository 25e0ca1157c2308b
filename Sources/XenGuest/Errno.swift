#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The calling thread's `errno`.
@inline(__always)
package func errnoValue() -> Int32 { errno }

/// Clears `errno` before a call whose failure is reported only through it.
@inline(__always)
package func clearErrno() { errno = 0 }
