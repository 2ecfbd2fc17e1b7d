/// Releases items in input order (`-k`): an item waits until every earlier sequence number has
/// been released or skipped.
struct InputOrder<Item> {
    private var next = 0
    private var waiting: [Int: Item] = [:]
    private var skipped: Set<Int> = []

    /// The sequence number released next: the earliest still missing.
    var nextSequence: Int { next }

    /// Adds the item for `sequence`; `release` gets every item now in order.
    mutating func add(_ item: Item, at sequence: Int, release: (Item) -> Void) {
        waiting[sequence] = item
        drain(release)
    }

    /// A sequence number that will have no item (`--resume` skipped it).
    mutating func skip(_ sequence: Int, release: (Item) -> Void) {
        skipped.insert(sequence)
        drain(release)
    }

    private mutating func drain(_ release: (Item) -> Void) {
        while true {
            if skipped.remove(next) != nil {
                next += 1
            } else if let item = waiting.removeValue(forKey: next) {
                release(item)
                next += 1
            } else {
                return
            }
        }
    }
}
