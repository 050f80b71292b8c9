//! The recorder contract on the in-memory store.

use std::sync::Arc;

use annals::persistence::memory::MemoryRecorder;

annals::recorder_contract!(|_| Some(Arc::new(MemoryRecorder::new())));

/// The key store contract on the memory store's keys.
mod keys {
    use std::sync::Arc;

    use annals::persistence::keys::MemoryKeyStore;
    use annals::persistence::memory::MemoryRecorder;

    annals::key_store_contract!(|_| Some((
        Arc::new(MemoryRecorder::new()),
        Arc::new(MemoryKeyStore::default())
    )));
}
