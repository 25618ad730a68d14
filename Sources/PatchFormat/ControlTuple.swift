/// One bsdiff control instruction: add `add` bytes (diff byte + old byte), copy `copy` bytes from the
/// extra stream, then move the old-file cursor by `seek` (relative, may be negative).
public struct ControlTuple: Equatable, Sendable {
    public var add: Int64
    public var copy: Int64
    public var seek: Int64

    public init(add: Int64, copy: Int64, seek: Int64) {
        self.add = add
        self.copy = copy
        self.seek = seek
    }
}

/// LEB128 varints (unsigned) and zigzag-mapped signed varints, as used by the `phx` control stream.
public enum Varint {
    /// At most 10 bytes for a 64-bit value.
    public static let maxLength = 10

    public static func appendUnsigned(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    public static func appendSigned(_ value: Int64, to out: inout [UInt8]) {
        appendUnsigned(zigzag(value), to: &out)
    }

    public static func zigzag(_ v: Int64) -> UInt64 {
        UInt64(bitPattern: (v << 1) ^ (v >> 63))
    }

    public static func unzigzag(_ u: UInt64) -> Int64 {
        Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    /// Reads an unsigned varint through `next` (which returns nil at the end of input).
    /// Throws `invalidControl` for a varint that is cut short, longer than 10 bytes or above 2^64-1.
    public static func readUnsigned(index: UInt64, field: String, _ next: () throws -> UInt8?) throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        for i in 0..<maxLength {
            guard let b = try next() else {
                throw PatchFormatError.invalidControl(index: index, reason: "is cut short: the control stream ends inside its \(field) field")
            }
            let payload = UInt64(b & 0x7f)
            if i == maxLength - 1 && b > 1 {
                throw PatchFormatError.invalidControl(index: index, reason: "has a \(field) varint above 2^64-1")
            }
            result |= payload << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
        throw PatchFormatError.invalidControl(index: index, reason: "has a \(field) varint longer than \(maxLength) bytes")
    }
}

/// bsdiff's 8-byte sign-and-magnitude integers ("offtout"/"offtin"): little-endian magnitude in the low
/// 63 bits, sign in the top bit of the last byte.
public enum SignMagnitude64 {
    public static func encode(_ value: Int64, into out: inout [UInt8]) {
        var magnitude = value.magnitude
        for i in 0..<8 {
            var b = UInt8(truncatingIfNeeded: magnitude)
            if i == 7 && value < 0 { b |= 0x80 }
            out.append(b)
            magnitude >>= 8
        }
    }

    /// Decodes 8 bytes. Every bit pattern decodes: the magnitude has 63 bits, so it always fits an Int64
    /// (and "-0" decodes as 0). Whether the value is acceptable is the caller's check.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Int64 {
        precondition(bytes.count >= 8, "sign-magnitude integer needs 8 bytes, got \(bytes.count)")
        var magnitude: UInt64 = UInt64(bytes[7] & 0x7f)
        for i in stride(from: 6, through: 0, by: -1) {
            magnitude = magnitude << 8 | UInt64(bytes[i])
        }
        let m = Int64(magnitude)  // < 2^63, always fits
        return bytes[7] & 0x80 != 0 ? -m : m
    }
}

/// Little-endian fixed-width helpers for headers.
public enum LittleEndian {
    public static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    public static func read<T: FixedWidthInteger>(_ type: T.Type, from bytes: UnsafeRawBufferPointer, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= bytes.count,
                     "read of \(MemoryLayout<T>.size) bytes at \(offset) outside \(bytes.count)")
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
