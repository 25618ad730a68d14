@testable import DiffEngine
import PatchFormat
import Testing

/// How `make` plans a bundle for paths that Swift `String`s confuse: NFC `caf\u{E9}` and NFD
/// `cafe\u{301}` are equal `String`s but two names on Linux; and paths that every applier refuses
/// together (letter case, Unicode normalization).
@Suite struct BundlePlanPathTests {
    static let nfc = "caf\u{E9}"
    static let nfd = "cafe\u{301}"

    static func file(_ path: String, _ text: String) -> TreeEntry {
        let bytes = Array(text.utf8)
        return .file(path, mode: 0o644, size: UInt64(bytes.count), sha256: SHA256Hasher.hash(bytes))
    }

    /// A tree's entries in scan order (byte-wise).
    static func tree(_ entries: [TreeEntry]) -> [TreeEntry] {
        entries.sorted { pathPrecedes($0.path, $1.path) }
    }

    /// The tree the plan's operations build from `old`, checked as the applier checks it (its digest
    /// must be `new`'s) before anything is written.
    static func built(_ plan: BundleMaker.Plan, old: [TreeEntry], new: [TreeEntry]) throws -> [TreeEntry] {
        try BundleManifest(touched: plan.touched, operations: plan.operations)
            .newTree(from: old, expectedDigest: TreeDigest.compute(new))
    }

    /// A rename from one normalization form to the other is a rename. Before, the renamed file was
    /// "unchanged" and the bundle named a new digest its operations could not build (apply refused it).
    @Test(arguments: [("caf\u{E9}", "cafe\u{301}"), ("cafe\u{301}", "caf\u{E9}")])
    func aRenameBetweenNormalizationFormsIsARename(from: String, to: String) throws {
        #expect(from == to && Array(from.utf8) != Array(to.utf8), "the premise: equal Strings, different bytes")
        let old = Self.tree([Self.file(from, "same"), Self.file("x", "1")])
        let new = Self.tree([Self.file(to, "same"), Self.file("x", "2")])
        let plan = BundleMaker.plan(old: old, new: new)
        #expect(plan.summary.unchanged == 0, "\(plan.summary)")
        #expect(plan.summary.copied == 1 && plan.summary.removed == 1 && plan.summary.changed == 1, "\(plan.summary)")
        #expect(plan.touched.map { Array($0.path.utf8) } == old.map { Array($0.path.utf8) }, "the renamed file and x")
        let built = try Self.built(plan, old: old, new: new)
        #expect(built.map { Array($0.path.utf8) } == new.map { Array($0.path.utf8) })
    }

    /// Both forms in old are two files: the one kept is diffed against its own old version and the
    /// other is removed. Before, NFD was diffed against the NFC file, and the NFC file was never removed.
    @Test func bothFormsInOldAreTwoFiles() throws {
        let decomposed = String(repeating: "decomposed form ", count: 64)
        let old = Self.tree([Self.file(Self.nfc, "composed"), Self.file(Self.nfd, decomposed)])
        let new = [Self.file(Self.nfd, decomposed + "v2")]
        let plan = BundleMaker.plan(old: old, new: new)
        #expect(plan.summary.removed == 1 && plan.summary.changed == 1 && plan.summary.unchanged == 0, "\(plan.summary)")
        let job = try #require(plan.dataJobs.first)
        let source = try #require(job.oldSource)
        #expect(Array(old[source].path.utf8) == Array(Self.nfd.utf8), "diffed against its own old version")
        let built = try Self.built(plan, old: old, new: new)
        #expect(built.map { Array($0.path.utf8) } == [Array(Self.nfd.utf8)])
    }

    /// A new tree with two paths that are one name on a case-insensitive file system is refused before
    /// anything is made, naming both, by the rule the applier refuses its bundle with.
    @Test(arguments: [
        (["A", "A/x", "a", "a/y"], "tree/A and tree/a (they differ only in letter case)"),
        (["X", "x"], "tree/X and tree/x (they differ only in letter case)"),
        (["cafe\u{301}", "caf\u{E9}"], "Unicode normalization: cafe\\u{301} and caf\\u{E9}"),
    ])
    func collidingPathsAreRefusedNamingBoth(paths: [String], named: String) throws {
        let new = Self.tree(paths.map { Self.file($0, $0) })
        let error = #expect(throws: DiffEngineError.self) {
            try BundleMaker.refuseCaseCollisions(new, root: "tree")
        }
        let message = error?.description ?? ""
        #expect(message.contains(named) && message.contains("case-insensitive file system"), "\(message)")
        // The applier's check of a new tree refuses the same pair.
        let top = new.filter { !$0.path.contains("/") }
        let refused = #expect(throws: PatchFormatError.self) {
            try BundleManifest.validateTree(top, list: "new tree")
        }
        #expect(refused?.description.contains("case-insensitive") == true, "\(String(describing: refused))")
    }

    /// Distinct names are not refused.
    @Test func distinctNamesAreKept() throws {
        try BundleMaker.refuseCaseCollisions(Self.tree([Self.file("a", "1"), Self.file("b", "2"), Self.file(Self.nfc, "3")]),
                                             root: "tree")
    }
}
