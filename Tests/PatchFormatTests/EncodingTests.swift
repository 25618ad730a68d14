import PatchFormat
import Testing

@Suite struct VarintTests {
    @Test(arguments: [UInt64(0), 1, 127, 128, 300, 16383, 16384, UInt64(UInt32.max), UInt64.max - 1, UInt64.max])
    func unsignedRoundTrip(_ value: UInt64) throws {
        var bytes = [UInt8]()
        Varint.appendUnsigned(value, to: &bytes)
        #expect(bytes.count <= Varint.maxLength)
        var i = 0
        let back = try Varint.readUnsigned(index: 0, field: "x") { i < bytes.count ? bytes[postIncrement(&i)] : nil }
        #expect(back == value)
        #expect(i == bytes.count)
    }

    @Test func knownEncodings() {
        var b = [UInt8]()
        Varint.appendUnsigned(300, to: &b)
        #expect(b == [0xAC, 0x02])
        b = []
        Varint.appendSigned(-1, to: &b)
        #expect(b == [0x01])
        b = []
        Varint.appendSigned(1, to: &b)
        #expect(b == [0x02])
        #expect(Varint.zigzag(Int64.min) == UInt64.max)
        #expect(Varint.unzigzag(UInt64.max) == Int64.min)
    }

    @Test(arguments: [Int64.min, -1_000_000, -1, 0, 1, 63, 64, Int64.max])
    func signedRoundTrip(_ value: Int64) {
        #expect(Varint.unzigzag(Varint.zigzag(value)) == value)
    }

    @Test func rejectsCutShortOverlongAndOverflowingVarints() {
        func read(_ bytes: [UInt8]) throws -> UInt64 {
            var i = 0
            return try Varint.readUnsigned(index: 7, field: "add") { i < bytes.count ? bytes[postIncrement(&i)] : nil }
        }
        #expect(throws: PatchFormatError.invalidControl(index: 7, reason: "is cut short: the control stream ends inside its add field")) {
            try read([0x80, 0x80])
        }
        #expect(throws: PatchFormatError.self) { try read(Array(repeating: 0x80, count: 10) + [0x01]) }
        // Ten bytes whose last carries more than the 64th bit.
        #expect(throws: PatchFormatError.invalidControl(index: 7, reason: "has a add varint above 2^64-1")) {
            try read(Array(repeating: 0xFF, count: 9) + [0x02])
        }
    }
}

@Suite struct SignMagnitudeTests {
    @Test(arguments: [Int64(0), 1, -1, 255, -256, 1 << 40, -(1 << 40), Int64.max, -Int64.max])
    func roundTrip(_ value: Int64) {
        var b = [UInt8]()
        SignMagnitude64.encode(value, into: &b)
        #expect(b.count == 8)
        #expect(b.withUnsafeBytes { SignMagnitude64.decode($0) } == value)
    }

    @Test func layoutIsLittleEndianMagnitudeWithSignInTopBit() {
        var b = [UInt8]()
        SignMagnitude64.encode(-2, into: &b)
        #expect(b == [2, 0, 0, 0, 0, 0, 0, 0x80])
        // "-0" decodes as 0.
        #expect([0, 0, 0, 0, 0, 0, 0, 0x80].withUnsafeBytes { SignMagnitude64.decode($0) } == 0)
    }
}

@Suite struct ChecksumTests {
    @Test func sha256KnownVectors() {
        #expect(Hex.encode(SHA256Hasher.hash(Array("abc".utf8))) ==
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.encode(SHA256Hasher.hash([])) ==
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // Incremental equals one-shot.
        let h = SHA256Hasher()
        h.update(Array("a".utf8))
        h.update(Array("bc".utf8))
        #expect(h.finalize() == SHA256Hasher.hash(Array("abc".utf8)))
    }

    @Test func crc32KnownVector() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test func hexRoundTripAndRejects() {
        #expect(Hex.decode("00ff10Ab") == [0, 255, 16, 171])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}

func postIncrement(_ i: inout Int) -> Int {
    defer { i += 1 }
    return i
}
