import Dispatch
import PatchFormat
import Synchronization

extension DiffEngine {
    /// Finishes `encoders` (their outputs in the same order), on up to `threads` cores at once, without
    /// letting the encoders that run together need more than `memoryBudget` bytes (`finishMemory`):
    /// the largest go first, and as many run at once as the largest ones fit in the budget (always at
    /// least one). xz compresses a whole stream in `finish()`, so this is where a patch's streams are
    /// compressed in parallel; the bytes do not depend on the thread count.
    static func finishAll(_ encoders: [any StreamEncoder], threads: Int, memoryBudget: Int) throws -> [[UInt8]] {
        let memory = encoders.map(\.finishMemory)
        let order = encoders.indices.sorted { memory[$0] > memory[$1] }
        let workers = finishWorkers(order.map { memory[$0] }, threads: threads, memoryBudget: memoryBudget)
        if workers == 1 { return try encoders.map { try $0.finish() } }
        nonisolated(unsafe) var results = [Result<[UInt8], Error>?](repeating: nil, count: encoders.count)
        nonisolated(unsafe) let jobs = encoders
        let next = Atomic<Int>(0)
        results.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let out = out
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while true {
                    let k = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    if k >= order.count { break }
                    let i = order[k]
                    out[i] = Result { try jobs[i].finish() }
                }
            }
        }
        return try results.map { try $0!.get() }
    }

    /// How many finishes may run at once: as many of the largest (`memories`, in decreasing order) as
    /// fit in the budget together, at least one, at most `threads`.
    static func finishWorkers(_ memories: [Int], threads: Int, memoryBudget: Int) -> Int {
        var workers = 1, need = memories.first ?? 0
        while workers < min(threads, memories.count) {
            need += memories[workers]
            if need > memoryBudget { break }
            workers += 1
        }
        return workers
    }
}
