#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Threads of our own for work that blocks on another thread (stream decoders that wait for their
/// reader, the old file's loader that the apply waits for): libdispatch on Linux adds workers for
/// blocked ones only after a delay (seconds, measured), so such work does not go on a dispatch queue.
public enum DetachedThread {
    /// Runs `body` on a new detached thread; false if none could be created (the caller then does
    /// the work on its own thread).
    public static func start(_ body: @escaping @Sendable () -> Void) -> Bool {
        final class Box: @unchecked Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        #if canImport(Darwin)
        var thread: pthread_t?
        #else
        var thread = pthread_t()
        #endif
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attributes) }
        let r = pthread_create(&thread, &attributes, { raw in
            let box = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Box
            box.body()
            return nil
        }, box)
        if r != 0 { Unmanaged<Box>.fromOpaque(box).release() }
        return r == 0
    }
}
