import DiffEngine

enum DiffEngineShim {
    static func fullBundle(of dir: String, to path: String) throws -> BundleSummary {
        try BundleMaker.make(oldRoot: nil, newRoot: dir, to: path)
    }
}
