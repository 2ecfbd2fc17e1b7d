import CMultiprocessingShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The file operations a command on another machine needs around it (GNU parallel's
/// `--transferfile`, `--return`, `--cleanup` and `--workdir`): paths are bytes, and every
/// failure names the call and the path.
enum FileStaging {
    /// Makes `path` and any missing parents, as `mkdir -p` does (mode 0755).
    static func makeDirectories(_ path: [UInt8]) throws(SystemCallError) {
        var prefix: [UInt8] = []
        for (index, component) in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).enumerated() {
            if index > 0 { prefix.append(UInt8(ascii: "/")) }
            prefix += component
            guard !component.isEmpty, component != [UInt8(ascii: ".")] else { continue }
            if withPath(prefix, { mkdir($0, 0o755) }) != 0 && errno != EEXIST {
                throw SystemCallError(call: "mkdir \(String(decoding: prefix, as: UTF8.self))", errno: .current)
            }
        }
    }

    /// Writes `contents` to `path` (replacing it), with `permissions`, making its folder.
    static func write(_ contents: [UInt8], to path: [UInt8], permissions: UInt32) throws(SystemCallError) {
        if let slash = path.lastIndex(of: UInt8(ascii: "/")), slash > 0 { try makeDirectories(Array(path[..<slash])) }
        let name = String(decoding: path, as: UTF8.self)
        let fd = withPath(path) { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(permissions & 0o7777)) }
        guard fd >= 0 else { throw SystemCallError(call: "open \(name)", errno: .current) }
        let file = FileDescriptor(owning: fd)
        let written = contents.withUnsafeBytes { bytes in Result { () throws(SystemCallError) in try file.writeAll(bytes) } }
        file.close()
        if case .failure(let error) = written { throw SystemCallError(call: "write \(name)", errno: error.errno) }
        _ = withPath(path) { chmod($0, mode_t(permissions & 0o7777)) }
    }

    /// The contents of `path` and its permission bits, refusing files over `limit` bytes.
    static func read(_ path: [UInt8], limit: Int) throws(SystemCallError) -> (contents: [UInt8], permissions: UInt32) {
        let name = String(decoding: path, as: UTF8.self)
        let fd = withPath(path) { open($0, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw SystemCallError(call: "open \(name)", errno: .current) }
        let file = FileDescriptor(owning: fd)
        var status = stat()
        let statted = fstat(file.rawValue, &status)
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var failure: SystemCallError?
        while failure == nil {
            let result = chunk.withUnsafeMutableBytes { bytes in Result { () throws(SystemCallError) in try file.readWaiting(into: bytes) } }
            switch result {
            case .success(let count) where count > 0:
                contents += chunk[..<count]
                if contents.count > limit { failure = SystemCallError(call: "read \(name) (over \(limit) bytes)", errno: Errno(rawValue: EFBIG)) }
                continue
            case .success:
                break
            case .failure(let error):
                failure = SystemCallError(call: "read \(name)", errno: error.errno)
            }
            break
        }
        file.close()
        if let failure { throw failure }
        return (contents, statted == 0 ? UInt32(status.st_mode) & 0o7777 : 0o644)
    }

    /// A new, empty folder named `prefix` and six random characters, only its owner may use.
    static func makeTemporaryDirectory(prefix: [UInt8]) throws(SystemCallError) -> [UInt8] {
        if let slash = prefix.lastIndex(of: UInt8(ascii: "/")), slash > 0 { try makeDirectories(Array(prefix[..<slash])) }
        var template = (prefix + Array("XXXXXX".utf8)).map { CChar(bitPattern: $0) } + [0]
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SystemCallError(call: "mkdtemp", errno: .current)
        }
        return template.dropLast().map { UInt8(bitPattern: $0) }
    }

    /// Removes `path`: a file, or a folder with everything in it (`rm -rf`); symbolic links
    /// are removed, never followed.
    static func removeTree(_ path: [UInt8]) {
        _ = withPath(path) { mp_remove_tree($0) }
    }

    /// Removes a file (not a folder); a missing one is not an error.
    static func removeFile(_ path: [UInt8]) {
        _ = withPath(path) { unlink($0) }
    }

    /// Runs `body` with `directory` as the process's working directory, then goes back: the
    /// command a job starts inherits it (posix_spawn has no portable way to set one).
    static func withWorkingDirectory<Value>(_ directory: [UInt8], _ body: () throws -> Value) throws -> Value {
        let here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard here >= 0 else { throw SystemCallError(call: "open .", errno: .current) }
        defer { close(here) }
        guard withPath(directory, { chdir($0) }) == 0 else {
            throw SystemCallError(call: "chdir \(String(decoding: directory, as: UTF8.self))", errno: .current)
        }
        defer { _ = fchdir(here) }
        return try body()
    }
}
