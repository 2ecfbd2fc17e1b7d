import CMultiprocessingShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// TCP, for the one transport that needs it: agents inside a Slurm allocation call the
/// coordinator back (see ``HostLink``).
enum Network {
    /// A listening socket on this machine's address toward `peer`, and where it listens.
    struct Listener: ~Copyable {
        var descriptor: FileDescriptor
        /// The numeric address it listens on.
        let address: String
        let port: Int
    }

    /// Listens on the address of this machine that routes to `peer` (and on no other), on a
    /// port the kernel picks.
    ///
    /// - Throws: ``SystemCallError``; `ENOENT` when `peer` cannot be resolved.
    static func listen(toward peer: String) throws(SystemCallError) -> Listener {
        var address = [CChar](repeating: 0, count: 64)
        var port: CInt = 0
        let fd = try systemCall("listen toward \(peer)") { mp_listen_toward(peer, &address, address.count, &port) }
        let text = address.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return Listener(descriptor: FileDescriptor(owning: fd), address: text, port: Int(port))
    }

    /// An accepted connection and who made it.
    struct Accepted: ~Copyable {
        var connection: FileDescriptor
        /// The peer's numeric address and port.
        let peer: String
    }

    /// A connection waiting on `listener`, non-blocking, with TCP_NODELAY; nil if none waits.
    static func accept(_ listener: borrowing FileDescriptor) throws(SystemCallError) -> Accepted? {
        var peer = [CChar](repeating: 0, count: 80)
        let outcome = try trySystemCall("accept4") { mp_accept_tcp(listener.rawValue, &peer, peer.count) }
        switch outcome {
        case .completed(let fd):
            return Accepted(connection: FileDescriptor(owning: fd), peer: peer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        case .wouldBlock:
            return nil
        }
    }

    /// Connects to the numeric `address` and `port` (blocking), with TCP_NODELAY.
    static func connect(to address: String, port: Int) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(owning: try systemCall("connect to \(address) port \(port)") { mp_connect_tcp(address, CInt(port)) })
    }

    /// `count` random bytes from the kernel, as lowercase hex.
    static func randomHex(byteCount count: Int) throws(SystemCallError) -> String {
        var bytes = [UInt8](repeating: 0, count: count)
        _ = try systemCall("getrandom") { mp_random_bytes(&bytes, count) }
        return bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
