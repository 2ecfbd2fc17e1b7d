import Foundation

/// A worker written by hand against the wire format, that breaks it in the way `mode` names,
/// so tests can check what the pool does with a worker that misbehaves.
///
/// It answers every jobs frame with one result per job (the job's input echoed back when it is
/// a varint), then breaks the protocol on the first batch:
/// - `trailing-byte`: a correct results frame with one extra byte in its body;
/// - `garbage`: bytes that are not a frame;
/// - `huge-length`: a frame header claiming 4 GiB;
/// - `truncated`: half a results frame, then exit;
/// - `wrong-version`: a preamble announcing protocol version 99;
/// - `silent`: never writes a byte (reads until its input closes);
/// - `close-output`: says hello, then closes its stdout and keeps running;
/// - `forge-json`: answers every job with a JSON-codec output holding a line break and a
///   second, forged record, as a worker trying to inject lines into `pool map`'s output would.
func serveBroken(mode: String) -> Never {
    let input = FileHandle.standardInput
    let output = FileHandle.standardOutput
    func send(_ bytes: [UInt8]) { output.write(Data(bytes)) }
    func frame(_ type: UInt8, _ body: [UInt8]) -> [UInt8] {
        let length = UInt32(body.count + 1)
        return [UInt8(length & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 24), type] + body
    }
    func varint(_ value: Int) -> [UInt8] {
        var value = UInt64(value)
        var bytes: [UInt8] = []
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        return bytes + [UInt8(value)]
    }
    func readExactly(_ count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        while bytes.count < count {
            let data = input.readData(ofLength: count - bytes.count)
            if data.isEmpty { exit(0) }
            bytes += data
        }
        return bytes
    }

    switch mode {
    case "wrong-version":
        send(Array("SWMP".utf8) + [99, 0, 0, 0])
        _ = input.readDataToEndOfFile()
        exit(0)
    case "silent":
        _ = input.readDataToEndOfFile()
        exit(0)
    default:
        break
    }
    // Preamble and a hello serving "square".
    // The version the pool speaks: it says so in the variable that marks a worker.
    let version = UInt16(ProcessInfo.processInfo.environment["SWIFT_MULTIPROCESSING_WORKER"] ?? "") ?? 2
    send(Array("SWMP".utf8) + [UInt8(truncatingIfNeeded: version), UInt8(truncatingIfNeeded: version >> 8), 0, 0])
    send(frame(0x01, varint(Int(getpid())) + varint(1) + varint(6) + Array("square".utf8)))
    if mode == "close-output" {
        try? output.close()
        _ = input.readDataToEndOfFile()
        while true { pause() }  // until the pool kills it
    }
    _ = readExactly(8)  // the coordinator's preamble
    while true {
        let header = readExactly(5)
        let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
        let body = readExactly(length - 1)
        guard header[4] == 0x10 else { continue }  // only jobs frames need an answer
        // Body: batch id, flags, count, then per job: index, codec, payload block. Assume
        // one-byte varints, which is what the tests send.
        let batchID = Int(body[0])
        let count = Int(body[2])
        var results: [UInt8] = varint(batchID) + varint(0) + varint(count) + varint(1000)
        var offset = 3
        for _ in 0..<count {
            let payloadLength = Int(body[offset + 2])
            let payload = Array(body[(offset + 3)..<(offset + 3 + payloadLength)])
            if mode == "forge-json" {
                let forged = Array("1\n{\"line\":999,\"output\":\"INJECTED\"}".utf8)
                results += [0, 1] + varint(forged.count) + forged
            } else {
                results += [0, 0] + varint(payload.count) + payload
            }
            offset += 3 + payloadLength
        }
        switch mode {
        case "trailing-byte":
            send(frame(0x11, results + [0xEE]))
        case "garbage":
            send(Array("this is not a frame at all, just text\n".utf8))
        case "huge-length":
            send([0xFF, 0xFF, 0xFF, 0xFF, 0x11])
        case "truncated":
            send(Array(frame(0x11, results).prefix(7)))
            exit(0)
        default:
            send(frame(0x11, results))
        }
    }
}
