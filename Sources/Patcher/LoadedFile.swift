import PatchFormat

/// A whole file read into memory (the input side of `make`, and the old file of an apply).
/// Memory: exactly the file's size.
public final class LoadedFile {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    private let storage: UnsafeMutableRawBufferPointer

    /// - Parameter hasher: fed with the file's bytes as they are read, if given.
    public init(path: String, hasher: SHA256Hasher? = nil) throws {
        self.path = path
        storage = try FileIO.readWholeFile(path, hasher: hasher, expectedSize: nil)
        bytes = UnsafeRawBufferPointer(storage)
    }

    deinit { storage.deallocate() }

    public var count: Int { bytes.count }
}
