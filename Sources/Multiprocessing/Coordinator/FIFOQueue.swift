/// A first-in, first-out queue over an array and a head index, which can also take items back
/// at its front.
///
/// Taking from the front only moves the head; the taken items are dropped when the queue
/// empties, or once they make up half the array, so a queue that is never quite emptied still
/// holds at most about twice what it has queued.
struct FIFOQueue<Element> {
    private var items: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    var count: Int { items.count - head }
    /// Items held, taken or not (for tests: it must stay bounded).
    var storageCount: Int { items.count }

    mutating func append(_ item: Element) { items.append(item) }

    mutating func append(contentsOf newItems: some Collection<Element>) { items.append(contentsOf: newItems) }

    /// Puts `newItems` back at the front, in order.
    mutating func prepend(_ newItems: [Element]) {
        if head >= newItems.count {
            head -= newItems.count
            for (offset, item) in newItems.enumerated() { items[head + offset] = item }
        } else {
            items.replaceSubrange(0..<head, with: newItems)
            head = 0
        }
    }

    var first: Element? { isEmpty ? nil : items[head] }

    mutating func replaceFirst(_ item: Element) { items[head] = item }

    /// Takes the first item; the queue must not be empty.
    mutating func removeFirst() -> Element {
        let item = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= items.count {
            items.removeSubrange(0..<head)
            head = 0
        }
        return item
    }

    /// Takes the first item, if there is one.
    mutating func popFirst() -> Element? { isEmpty ? nil : removeFirst() }

    mutating func removeAll() -> [Element] {
        defer {
            items.removeAll()
            head = 0
        }
        return Array(items[head...])
    }
}
