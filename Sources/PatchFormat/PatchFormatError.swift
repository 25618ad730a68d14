/// Everything that can be wrong with the bytes of a patch. Each case names the field or stream and the
/// offending values, so that the message alone tells a user what is wrong and where.
public enum PatchFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The first bytes are not a magic this version knows.
    case badMagic(found: [UInt8])
    /// A `phx` header with a format version this build cannot read.
    case unsupportedVersion(UInt16)
    /// A `phx` header with flag bits this build does not know (they would change the meaning of the data).
    case unknownFlags(UInt16)
    /// A codec id that no codec plug-in claims.
    case unknownCodec(UInt8)
    /// The CRC-32 stored in the `phx` header does not match the header bytes.
    case headerChecksumMismatch(stored: UInt32, computed: UInt32)
    /// The patch ends before a fixed-size part is complete.
    case truncated(part: String, needed: UInt64, available: UInt64)
    /// A header field holds a value that cannot be right (negative size, inconsistent lengths, ...).
    case invalidField(field: String, value: String, reason: String)
    /// A declared size exceeds a configured limit; refused before anything is allocated.
    case limitExceeded(field: String, value: UInt64, limit: UInt64)
    /// A compressed stream failed to decode.
    case corruptStream(stream: String, detail: String)
    /// A compressed stream ended before the data the patch needs from it.
    case truncatedStream(stream: String, producedBytes: UInt64, neededMore: UInt64)
    /// A stream holds more data than the patch uses, or bytes follow the last stream.
    case trailingData(location: String, detail: String)
    /// A control tuple that would read or write out of bounds, overflow, or disagree with the header.
    case invalidControl(index: UInt64, reason: String)
    /// The compressor itself failed (out of memory, bad parameter).
    case compressionFailed(codec: String, detail: String)

    public var description: String {
        switch self {
        case .badMagic(let found):
            let shown = found.prefix(8).map { b -> String in
                (0x20...0x7e).contains(b) ? String(UnicodeScalar(b)) : "\\x" + String(b, radix: 16)
            }.joined()
            return "not a patch: unknown magic \"\(shown)\" at offset 0 (expected \"PHXPATCH\", \"BSDIFF40\" or \"PHXBUNDL\")"
        case .unsupportedVersion(let v):
            return "unsupported patch: phx format version \(v) (this build reads version \(PhxHeader.currentVersion))"
        case .unknownFlags(let f):
            return "unsupported patch: unknown header flags 0x\(String(f, radix: 16)) at offset 10"
        case .unknownCodec(let id):
            return "unsupported patch: unknown codec id \(id) at offset 12"
        case .headerChecksumMismatch(let stored, let computed):
            return "corrupt patch: header CRC-32 is 0x\(String(stored, radix: 16)) but the header bytes give 0x\(String(computed, radix: 16))"
        case .truncated(let part, let needed, let available):
            return "corrupt patch: truncated \(part): needs \(needed) bytes, only \(available) present"
        case .invalidField(let field, let value, let reason):
            return "corrupt patch: header field \(field) = \(value): \(reason)"
        case .limitExceeded(let field, let value, let limit):
            return "refused patch: \(field) is \(value) bytes, above the limit of \(limit) bytes"
        case .corruptStream(let stream, let detail):
            return "corrupt patch: \(stream) stream: \(detail)"
        case .truncatedStream(let stream, let produced, let more):
            return "corrupt patch: \(stream) stream ends after \(produced) bytes but \(more) more are needed"
        case .trailingData(let location, let detail):
            return "corrupt patch: trailing data \(location): \(detail)"
        case .invalidControl(let index, let reason):
            return "corrupt patch: control tuple \(index) \(reason)"
        case .compressionFailed(let codec, let detail):
            return "\(codec) compression failed: \(detail)"
        }
    }
}
