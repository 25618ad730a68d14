#if canImport(Glibc)
import Glibc
#endif
import PatchFormat

/// A patch to read: an open file or bytes in memory. Streams are read through `source(offset:length:)`,
/// so nothing but the header is ever loaded whole.
protocol PatchInput: AnyObject {
    var length: UInt64 { get }
    func bytes(at offset: UInt64, count: Int) throws -> [UInt8]
    func source(offset: UInt64, length: UInt64) -> any ByteSource
}

final class FilePatchInput: PatchInput {
    let path: String
    let fd: Int32
    let length: UInt64

    init(path: String) throws {
        self.path = path
        fd = try FileIO.openRead(path)
        do {
            length = try FileIO.fileSize(fd, path)
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    func bytes(at offset: UInt64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try FileIO.pread(fd, path, into: $0, at: offset) }
        return Array(out[0..<n])
    }

    func source(offset: UInt64, length: UInt64) -> any ByteSource {
        FileRangeSource(fd: fd, path: path, offset: offset, length: length)
    }
}

final class MemoryPatchInput: PatchInput {
    let data: [UInt8]
    var length: UInt64 { UInt64(data.count) }

    init(_ data: [UInt8]) { self.data = data }

    func bytes(at offset: UInt64, count: Int) throws -> [UInt8] {
        let start = Int(min(offset, length))
        return Array(data[start..<min(start + count, data.count)])
    }

    func source(offset: UInt64, length: UInt64) -> any ByteSource {
        MemorySource(data, range: Int(offset)..<Int(offset + length))
    }
}

/// A parsed and validated header of either format.
public enum PatchHeader: Equatable, Sendable {
    case phx(PhxHeader)
    case bsdiff(BsdiffHeader)

    public var kind: PatchKind {
        switch self {
        case .phx: .phx
        case .bsdiff: .bsdiff
        }
    }

    public var newSize: UInt64 {
        switch self {
        case .phx(let h): h.newSize
        case .bsdiff(let h): h.newSize
        }
    }

    static func read(from input: any PatchInput, limits: PatchLimits) throws -> PatchHeader {
        let head = try input.bytes(at: 0, count: PhxHeader.size)
        switch try PatchKind.detect(head) {
        case .phx: return .phx(try PhxHeader.decode(head, fileLength: input.length, limits: limits))
        case .bsdiff: return .bsdiff(try BsdiffHeader.decode(head, fileLength: input.length, limits: limits))
        }
    }
}
