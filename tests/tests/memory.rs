//! The recorder contract on the in-memory store.

use std::sync::Arc;

use annals::persistence::memory::MemoryRecorder;

annals::recorder_contract!(|_| Some(Arc::new(MemoryRecorder::new())));
