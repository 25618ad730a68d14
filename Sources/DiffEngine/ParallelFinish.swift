import Dispatch
import PatchFormat
import TreeIO
import Synchronization

extension DiffEngine {
    /// Finishes `encoders` (their outputs in the same order), on up to `threads` cores at once, without
    /// letting the encoders that run together need more than `memoryBudget` bytes (`finishMemory`):
    /// the largest go first, and as many run at once as the largest ones fit in the budget (always at
    /// least one). xz compresses a whole stream in `finish()`, so this is where a patch's streams are
    /// compressed in parallel; the bytes do not depend on the thread count.
    static func finishAll(_ encoders: [any StreamEncoder], threads: Int, memoryBudget: Int) throws -> [[UInt8]] {
        let pool = FinishPool(encoders)
        pool.run(workers: finishWorkers(pool.memories, threads: threads, memoryBudget: memoryBudget))
        return try pool.results()
    }

    /// `finishAll` beside a stream compressing on another core (`AsideStream`, which holds `aside.memory`
    /// until it is done): as many finishes as fit beside it start at once, on this core and up to
    /// `threads` - 2 more, and the aside stream's core takes the rest with them once its own stream
    /// is done, if the budget allows one more at once. Then waits for the aside stream; returns the
    /// outputs of `encoders` in order and the aside stream's.
    static func finishAll(_ encoders: [any StreamEncoder], beside aside: AsideStream, threads: Int,
                          memoryBudget: Int) throws -> (finished: [[UInt8]], aside: [UInt8]) {
        let pool = FinishPool(encoders)
        let besideIt = finishWorkers(pool.memories, threads: max(1, threads - 1), memoryBudget: memoryBudget - aside.memory)
        let after = finishWorkers(pool.memories, threads: threads, memoryBudget: memoryBudget)
        aside.then(after > besideIt ? pool : nil)
        pool.run(workers: besideIt)
        let asideOutput = try aside.result()
        return (try pool.results(), asideOutput)
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

/// Encoders to finish, the largest (`finishMemory`) first, taken one at a time by whichever thread
/// calls `work` next; each output lands in its encoder's place.
final class FinishPool: @unchecked Sendable {
    private let jobs: [any StreamEncoder]
    private let order: [Int]
    /// The encoders' `finishMemory`, in decreasing order.
    let memories: [Int]
    private let outputs: UnsafeMutableBufferPointer<Result<[UInt8], Error>?>
    private let next = Atomic<Int>(0)

    init(_ encoders: [any StreamEncoder]) {
        jobs = encoders
        let memory = encoders.map(\.finishMemory)
        order = encoders.indices.sorted { memory[$0] > memory[$1] }
        memories = order.map { memory[$0] }
        outputs = .allocate(capacity: encoders.count)
        outputs.initialize(repeating: nil)
    }

    deinit {
        outputs.deinitialize()
        outputs.deallocate()
    }

    /// Finishes encoders on `workers` threads (this one among them) until none is left.
    func run(workers: Int) {
        if workers <= 1 {
            work()
        } else {
            DispatchQueue.concurrentPerform(iterations: workers) { _ in work() }
        }
    }

    /// Finishes encoders until none is left.
    func work() {
        while true {
            let k = next.wrappingAdd(1, ordering: .relaxed).oldValue
            if k >= order.count { return }
            let i = order[k]
            outputs[i] = Result { try jobs[i].finish() }
        }
    }

    /// The outputs in the encoders' order (once every `work` call has returned).
    func results() throws -> [[UInt8]] {
        try outputs.map { r in
            guard let r else { throw DiffEngineError.internalInconsistency("a stream was never compressed") }
            return try r.get()
        }
    }
}

/// One stream of a patch compressed on another core while the caller makes the others: the extra
/// stream, whose bytes (new's, stored verbatim) are known as soon as matching is done. That core then
/// helps finish the other streams (`DiffEngine.finishAll(_:beside:...)`).
final class AsideStream: @unchecked Sendable {
    private let encoder: any StreamEncoder
    private let holds: Bool
    private let group = DispatchGroup()
    private var outcome: Result<[UInt8], Error>?
    private let handedOver = DispatchSemaphore(value: 0)
    private var pool: FinishPool?
    private var handed = false
    /// What the compression holds and allocates beyond the caller's streams, in bytes, once started.
    private(set) var memory: Int

    /// `memory`: the codec's `encoderMemory` (xz holds the raw stream and compresses it at the end).
    init(_ encoder: any StreamEncoder, memory: (bytes: Int, holdsStreams: Bool)) {
        self.encoder = encoder
        holds = memory.holdsStreams
        self.memory = memory.bytes
    }

    /// Starts compressing the bytes of `new` the tuples copy verbatim, in order. An encoder that holds
    /// its input takes it here (a copy); one that compresses as it goes takes it on the other core.
    func start(extraOf chunks: [[RecordedTuple]], new: UnsafeBufferPointer<UInt8>) throws {
        let bytes = UnsafeRawBufferPointer(new)
        let pieces = chunks.joined().filter { $0.copy > 0 }.map {
            UnsafeRawBufferPointer(rebasing: bytes[($0.newStart + $0.add)..<($0.newStart + $0.add + $0.copy)])
        }
        nonisolated(unsafe) let encoder = encoder
        if holds {
            for p in pieces { try encoder.write(p) }
            memory = encoder.heldBytes + encoder.finishMemory
        }
        nonisolated(unsafe) let later = holds ? [] : pieces
        DispatchQueue.global().async(group: group) {
            self.outcome = Result {
                for p in later { try encoder.write(p) }
                return try encoder.finish()
            }
            self.handedOver.wait()
            self.pool?.work()
        }
    }

    /// What the aside core does once its stream is compressed: help finish `pool`, or nothing. Called
    /// once (`join` calls it with nil if nobody did).
    func then(_ pool: FinishPool?) {
        precondition(!handed, "the aside stream's core was handed work twice")
        handed = true
        self.pool = pool
        handedOver.signal()
    }

    /// Waits until the compression (if started) and any help with the pool are over.
    func join() {
        if !handed { then(nil) }
        group.wait()
    }

    /// The compressed stream; waits for it (and for the aside core's help with the pool).
    func result() throws -> [UInt8] {
        join()
        guard let outcome else { throw DiffEngineError.internalInconsistency("the extra stream was never compressed") }
        return try outcome.get()
    }
}

/// The diff-runs stream in old-context order made on another core from the tuples, while the caller
/// emits them (natural order, literals, control): the context coder's passes were most of the Django
/// tar's emission, on one core while the other had nothing to do. The bytes are those the assembler
/// would make (the coder's output does not depend on how the diff bytes are cut into pieces).
/// `old` and `new` must stay valid until `finish` or `join` has returned. It runs on a thread of its
/// own (`DetachedThread`; or on the caller's, after the emission, when `make` has one thread), not a
/// dispatch queue: the caller waits for it, and the extra stream's
/// `AsideStream` may be holding a dispatch worker blocked meanwhile, which libdispatch on Linux
/// replaces only after a delay (with one free worker or none, the coding would wait seconds).
final class AsideContextRuns: @unchecked Sendable {
    private let encoder: any StreamEncoder
    private let group = DispatchGroup()
    private var outcome: Result<Void, Error>?
    private var started = false
    /// Set by `cancel`: the coding stops before its next piece of diff bytes, or within 64 Ki bytes of
    /// a block's passes (`ContextRunCoder.shouldStop`); what it wrote is not to be used.
    private let stopped = Atomic<Bool>(false)

    init(_ encoder: any StreamEncoder) {
        self.encoder = encoder
    }

    /// Starts coding the diff bytes of `chunks`' tuples, in order. With `newPages` (new's mapping), the
    /// pages of new it has read are dropped behind each chunk, as the emitting core drops those it has.
    /// `onThisThread`: coded here, before it returns (one thread).
    func start(_ chunks: [[RecordedTuple]], old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>,
               newPages: MappedFile?, onThisThread: Bool = false) {
        started = true
        nonisolated(unsafe) let (o, n) = (old, new)
        group.enter()
        let work: @Sendable () -> Void = {
            self.outcome = Result { try self.code(chunks, old: o, new: n, newPages: newPages) }
            self.group.leave()
        }
        // Here when asked (one thread, after the emission), or when no thread is to be had (then before
        // the caller emits: slower, the same bytes).
        if onThisThread || !DetachedThread.start(work) { work() }
    }

    private func code(_ chunks: [[RecordedTuple]], old: UnsafeBufferPointer<UInt8>, new: UnsafeBufferPointer<UInt8>,
                      newPages: MappedFile?) throws {
        let coder = ContextRunCoder(maxBytes: new.count)
        coder.shouldStop = { self.stopped.load(ordering: .relaxed) }
        let chunk = 1 << 16
        let scratch = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunk)
        defer { scratch.deallocate() }
        struct Stopped: Error {}
        do {
            for tuples in chunks {
                for t in tuples where t.add > 0 {
                    try StreamAssembler.forEachDiffChunk(old: old, new: new, oldStart: t.oldStart, newStart: t.newStart,
                                                         count: t.add, scratch: scratch) { at, piece in
                        if stopped.load(ordering: .relaxed) { throw Stopped() }
                        coder.add(old: old, oldStart: at, diff: piece)
                        if coder.runs.count >= chunk { try encoder.write(coder.takeRuns()) }
                    }
                }
                if let newPages, let last = tuples.last { newPages.release(0..<(last.newStart + last.add)) }
            }
        } catch is Stopped {
            return
        }
        coder.finish()
        if coder.isStopped { return }
        try encoder.write(coder.takeRuns())
    }

    /// Waits until the coding (if started) is over.
    func join() { group.wait() }

    /// Stops the coding early, its stream no longer wanted (`finish` then waits for it to stop).
    func cancel() { stopped.store(true, ordering: .relaxed) }

    /// Waits for the coding and reports its error, if any. (Never started, it has written no runs,
    /// not even empty ones: an error.)
    func finish() throws {
        join()
        guard started, let outcome else {
            throw DiffEngineError.internalInconsistency("the old-context diff runs were never coded")
        }
        try outcome.get()
    }
}
