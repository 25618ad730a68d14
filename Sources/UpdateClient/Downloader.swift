import Foundation
import NIOCore
import NIOHTTP1
import PatchFormat
import TreeIO

/// Progress of a download, for a bar or for `--json` events.
public struct DownloadProgress: Sendable, Codable {
    public var received: UInt64
    public var total: UInt64
    public var bytesPerSecond: Double
}

/// Downloads a package to `directory/<sha256>.part`, resuming a partial file with `Range`, never reading
/// more than the signed size, then checks size and SHA-256 and renames it to `<sha256>.bundle`.
///
/// A server that stalls is given up on, the partial file kept for the next attempt to resume: when it
/// sends nothing for `readTimeout`, or (a trickle that keeps the connection alive, the "slow
/// retrieval" attack) less than `minimumRate.bytes` in a window of `minimumRate.seconds`.
public struct Downloader: Sendable {
    public var allowInsecure: Bool
    public var trust: TLSTrust
    var readTimeout: TimeAmount = .seconds(60)
    /// 48 KiB in 3 minutes (273 bytes/s) is far below any working link and far above a trickle; the
    /// window is three read timeouts long, so a link that stalls for most of one and recovers passes.
    var minimumRate = RateFloor(bytes: 48 << 10, seconds: 180)

    public init(allowInsecure: Bool = false, trust: TLSTrust = TLSTrust()) {
        self.allowInsecure = allowInsecure
        self.trust = trust
    }

    /// Refuses plain http:// except to loopback (unless allowed).
    public static func checkScheme(_ url: String, allowInsecure: Bool) throws {
        guard let u = URL(string: url), let scheme = u.scheme?.lowercased(), let host = u.host else {
            throw ClientError.badSetting("url", "\(url.prefix(200)) is not a URL")
        }
        switch scheme {
        case "https": return
        case "http":
            if allowInsecure || ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host.lowercased()) { return }
            throw ClientError.insecureURL(url)
        default:
            throw ClientError.badSetting("url", "unsupported scheme \(scheme)")
        }
    }

    /// Why a redirect is refused (it could lead to plain HTTP or another host), or nil.
    static func refusedRedirect(_ status: Int, _ headers: [String: String]) -> ClientError? {
        guard (300...399).contains(status), status != 304 else { return nil }
        let to = headers["location"] ?? "nowhere"
        let why = to.lowercased().hasPrefix("http://") ? "a redirect to plain HTTP" : "a redirect"
        return .server(status: status, message: "refusing \(why) (\(to.prefix(200))): the client follows no redirects")
    }

    public func fetch(url: String, size: UInt64, sha256: String, into directory: String,
                      progress: (@Sendable (DownloadProgress) -> Void)? = nil) async throws -> String {
        try Self.checkScheme(url, allowInsecure: allowInsecure)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let final = directory + "/" + sha256 + ".bundle"
        if POSIX.exists(final), (try? TreeScanner.hashFile(final)).map(Hex.encode) == sha256 { return final }
        let part = directory + "/" + sha256 + ".part"
        var have = UInt64((try? POSIX.lstat(part).st_size).map { Int($0) } ?? 0)
        if have > size { try POSIX.unlink(part); have = 0 }
        if have < size {
            // Refuse up front what cannot fit (a disk that fills up later is caught at the write).
            if let free = POSIX.freeSpace(directory), free < size - have {
                throw ClientError.install(category: "disk_full",
                                          detail: "the download needs \(size - have) more bytes in \(directory), only \(free) are free")
            }
            try await download(url: url, part: part, have: have, size: size, progress: progress)
        }
        let gotSize = UInt64(try POSIX.lstat(part).st_size)
        guard gotSize == size else { throw ClientError.checksum("downloaded \(gotSize) bytes, the signed size is \(size)") }
        let got = Hex.encode(try TreeScanner.hashFile(part))
        guard got == sha256 else {
            try? POSIX.unlink(part)
            throw ClientError.checksum("the download hashes to \(got), the signed SHA-256 is \(sha256)")
        }
        try POSIX.rename(part, final)
        return final
    }

    func download(url: String, part: String, have: UInt64, size: UInt64,
                  progress: (@Sendable (DownloadProgress) -> Void)?) async throws {
        let headers = have > 0 ? [("Range", "bytes=\(have)-")] : []
        var transport = HTTPTransport(trust: trust)
        transport.readTimeout = readTimeout
        let minimumRate = self.minimumRate
        try await transport.execute(.GET, url, headers: headers) { response, body in
            var offset = have
            switch response.status {
            case 206:
                // Exactly the rest of the signed package: a range of another length or total is another
                // file (the partial is named by the package's SHA-256, so the total is known).
                guard let range = response.headers["content-range"], range == "bytes \(have)-\(size - 1)/\(size)" else {
                    try? POSIX.unlink(part)  // the next try starts from the beginning, not from the same refusal
                    throw ClientError.network("the server answered a resume of bytes \(have)- with the range "
                        + "\"\(response.headers["content-range"]?.prefix(60) ?? "")\", not bytes \(have)-\(size - 1)/\(size)")
                }
            case 200:
                offset = 0
            case 416:
                // Our partial file does not fit the server's package: start again.
                try? POSIX.unlink(part)
                throw ClientError.network("the server refused to resume (416); the partial download was discarded")
            default:
                throw Self.refusedRedirect(response.status, response.headers)
                    ?? ClientError.server(status: response.status, message: "download of \(url) failed")
            }
            let fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw POSIX.error("cannot open", part) }
            defer { close(fd) }
            if offset == 0 { _ = ftruncate(fd, 0) }
            guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else { throw POSIX.error("cannot seek", part) }
            let started = Date()
            var received: UInt64 = 0
            var rate = minimumRate
            rate.start(at: RateFloor.now())
            do {
                while let chunk = try await body.next() {
                    let n = UInt64(chunk.readableBytes)
                    guard offset + n <= size else {
                        throw ClientError.checksum("the server sent more than the signed size of \(size) bytes")
                    }
                    do { try chunk.withUnsafeReadableBytes { try POSIX.writeAll(fd, part, $0) } } catch let TreeIOError.io(_, _, code, message)
                        where code == ENOSPC || code == EDQUOT {
                        // A full disk: drop the partial file (nothing half-written stays behind) and say so.
                        try? POSIX.unlink(part)
                        throw ClientError.install(category: "disk_full", detail: "\(message) while downloading to \(part); the partial download was removed")
                    }
                    offset += n
                    received += n
                    try rate.record(n, at: RateFloor.now())
                    let elapsed = max(Date().timeIntervalSince(started), 0.001)
                    progress?(DownloadProgress(received: offset, total: size, bytesPerSecond: Double(received) / elapsed))
                }
            } catch let e as ClientError where e.category != "network" {
                throw e
            } catch let e as TreeIOError {
                throw ClientError.install(category: "io", detail: e.description)
            } catch let slow as RateFloor.Shortfall {
                _ = fsync(fd)
                throw ClientError.network("\(slow.description), after \(offset) of \(size) bytes; the partial download is kept and will resume")
            } catch {
                _ = fsync(fd)
                let why = if case .network(let w)? = error as? ClientError { w } else { "\(error)" }
                throw ClientError.network("the download was interrupted after \(offset) of \(size) bytes (it will resume): \(why)")
            }
            _ = fsync(fd)
        }
    }
}

/// The least a download must receive: `bytes` in each window of at least `seconds` (a window ends
/// with the first chunk after `seconds`, so it lasts up to `seconds` plus one read timeout). Checked
/// as chunks arrive; total silence is the read timeout's case. Time is the monotonic clock, which a
/// wall-clock change or a suspended laptop does not move.
struct RateFloor: Sendable {
    var bytes: UInt64
    var seconds: TimeInterval
    private var windowStart: TimeInterval = 0
    private var windowBytes: UInt64 = 0

    init(bytes: UInt64, seconds: TimeInterval) {
        (self.bytes, self.seconds) = (bytes, seconds)
    }

    /// Seconds on the monotonic clock.
    static func now() -> TimeInterval {
        Double(DispatchTime.now().uptimeNanoseconds) / 1e9
    }

    mutating func start(at time: TimeInterval) {
        (windowStart, windowBytes) = (time, 0)
    }

    struct Shortfall: Error, CustomStringConvertible {
        var description: String
    }

    /// Counts `count` bytes arrived at `time`; throws when a whole window ended with fewer than `bytes`.
    mutating func record(_ count: UInt64, at time: TimeInterval) throws(Shortfall) {
        windowBytes += count
        let elapsed = time - windowStart
        guard elapsed >= seconds else { return }
        guard windowBytes >= bytes else {
            throw Shortfall(description: "the server sent \(windowBytes) bytes in \(String(format: "%.1f", elapsed)) s, "
                + "below the minimum of \(bytes) bytes per \(String(format: "%g", seconds)) s")
        }
        start(at: time)
    }
}
