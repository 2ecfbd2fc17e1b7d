import Foundation
import Multiprocessing

/// GNU parallel's options for files of commands on other machines: `--transferfile`/`--tf`,
/// `--return`, `--cleanup`, `--trc` and `--workdir`/`--wd`. Each file name is a template,
/// filled in per job like the command (`{}`, `{.}`, …). They apply only where a job runs on
/// another machine; on this one the files are already in place.
struct RemoteFileOptions {
    var transfers: [Bytes] = []
    var returns: [Bytes] = []
    var cleanup = false
    var workingDirectory: Bytes?

    var isEmpty: Bool { transfers.isEmpty && returns.isEmpty && !cleanup && workingDirectory == nil }

    /// Takes `option` if it is one of these; `value` gives its argument as bytes.
    mutating func parse(_ option: String, value: () throws(UsageError) -> Bytes) throws(UsageError) -> Bool {
        switch option {
        case "--transferfile", "--tf", "--transfer-file": transfers.append(try value())
        case "--return": returns.append(try value())
        case "--cleanup": cleanup = true
        case "--trc":
            let file = try value()
            transfers.append(Array("{}".utf8))
            returns.append(file)
            cleanup = true
        case "--transfer":
            transfers.append(Array("{}".utf8))
        case "--workdir", "--wd":
            let directory = try value()
            guard !directory.isEmpty else { throw UsageError("\(option) needs a folder, '.' or '...'") }
            workingDirectory = directory
        default: return false
        }
        return true
    }

    /// The files of one job: `render` fills a template in with the job's values.
    ///
    /// - Throws: ``FileError`` naming a file to transfer that cannot be read.
    func files(render: (Bytes) -> Bytes) throws -> CommandJob.RemoteFiles {
        var files = CommandJob.RemoteFiles(removesFiles: cleanup)
        files.workingDirectory = Self.workingDirectory(workingDirectory)
        for template in transfers {
            let local = render(template)
            let name = String(decoding: local, as: UTF8.self)
            guard let contents = FileManager.default.contents(atPath: name) else {
                throw FileError("read the --transferfile", name)
            }
            let permissions = ((try? FileManager.default.attributesOfItem(atPath: name))?[.posixPermissions] as? Int).map(UInt32.init) ?? 0o644
            files.transfers.append(CommandJob.File(path: Self.remotePath(local), contents: Array(contents), permissions: permissions))
        }
        files.returns = returns.map { Self.remotePath(render($0)) }
        return files
    }

    /// Writes the files a job brought back where they belong here.
    ///
    /// - Returns: A message for each that could not be written.
    static func keep(_ returned: [CommandJob.File]) -> [String] {
        var problems: [String] = []
        for file in returned {
            let name = String(decoding: file.path, as: UTF8.self)
            let url = URL(fileURLWithPath: name)
            do {
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(file.contents).write(to: url)
                try? FileManager.default.setAttributes([.posixPermissions: Int(file.permissions)], ofItemAtPath: name)
            } catch {
                problems.append("cannot write the returned file \(name): \(error.localizedDescription)")
            }
        }
        return problems
    }

    /// GNU parallel's `/./`: what follows it is the path relative to the working directory.
    static func remotePath(_ path: Bytes) -> Bytes {
        let marker = Array("/./".utf8)
        guard let range = path.firstRange(of: marker) else { return path }
        return Array(path[range.upperBound...])
    }

    /// `...` is a new folder of the job's own; `.` the folder that is the current one here,
    /// relative to the home folder; anything else a folder relative to the home folder.
    static func workingDirectory(_ option: Bytes?) -> CommandJob.RemoteFiles.WorkingDirectory {
        guard let option else { return .home }
        if option == Array("...".utf8) { return .temporary }
        if option == Array(".".utf8) {
            let here = Array(FileManager.default.currentDirectoryPath.utf8)
            let home = Array((ProcessInfo.processInfo.environment["HOME"] ?? "").utf8)
            if !home.isEmpty, here.starts(with: home + [UInt8(ascii: "/")]) { return .path(Array(here.dropFirst(home.count + 1))) }
            return here == home ? .home : .path(here)
        }
        return .path(option)
    }
}
