//! The decoder's hot path allocates only what its answer owns: a change of an envelope costs the table and
//! schema names and nothing else (no error built and thrown away, no copy of a borrowed field).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use cdc_orchestrator::decoder::{Decoded, decode};

/// The system allocator, counting each thread's allocations. It is the whole test binary's allocator, but the
/// count is per thread and every test runs on a thread of its own, so a test here sees only its own
/// allocations, whatever the other tests do meanwhile.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many allocations decoding `value` takes, and its answer.
fn allocations(topic: &str, value: &str) -> (usize, Decoded) {
    let before = ALLOCATIONS.with(Cell::get);
    let decoded = decode(topic, None, Some(value.as_bytes()));
    (ALLOCATIONS.with(Cell::get) - before, decoded)
}

const SOURCE: &str = r#""source":{"version":"3.4.0.Final","connector":"postgresql","name":"s","ts_ms":1700000000000,"snapshot":"false","db":"u","sequence":"[\"0\",\"1\"]","schema":"public","table":"faculty","txId":1000,"lsn":20000000,"xmin":null}"#;

#[test]
fn an_envelope_allocates_only_its_table_and_schema() {
    let envelope = format!(
        r#"{{"before":null,"after":{{"id":1,"note":"[{{x}}]"}},{SOURCE},"op":"c","ts_ms":1700000000000,"transaction":null}}"#
    );
    let (count, decoded) = allocations("s.public.faculty", &envelope);
    assert!(matches!(decoded, Decoded::Change(_)), "{decoded:?}");
    assert_eq!(count, 2, "{decoded:?}");
    // A schema wrapper costs one more: serde_json skips a value nested two levels deep (here `after` inside
    // `payload`) with a stack of its own. (So does a boolean `source.snapshot`, from old connectors: the
    // untagged enum tries the common string first and builds an error before it finds the boolean.)
    let wrapped = format!(r#"{{"schema":{{"type":"struct","fields":[]}},"payload":{envelope}}}"#);
    assert_eq!(allocations("s.public.faculty", &wrapped).0, 3);
}

#[test]
fn an_unwrapped_row_allocates_only_its_table_and_schema() {
    let row = r#"{"id":1,"__op":"u","__table":"faculty","__schema":"public","__deleted":"false","__snapshot":"false","__source_ts_ms":1}"#;
    let (count, decoded) = allocations("s.public.faculty", row);
    assert!(matches!(decoded, Decoded::Change(_)), "{decoded:?}");
    assert_eq!(count, 2, "{decoded:?}");
}

#[test]
fn transaction_metadata_allocates_only_its_status() {
    let begin = r#"{"status":"BEGIN","id":"571:53195832","ts_ms":1,"event_count":null,"data_collections":null}"#;
    let (count, decoded) = allocations("s.transaction", begin);
    assert!(matches!(decoded, Decoded::Transaction { .. }), "{decoded:?}");
    assert_eq!(count, 1, "{decoded:?}");
}
