//! The DCB recorder contract (Python's `DCBRecorderTestCase`) on every
//! store that has a DCB recorder.

use std::sync::Arc;

mod memory {
    use super::*;
    use annals::persistence::dcb::MemoryDcbRecorder;

    annals::dcb_recorder_contract!(|_| Some(Arc::new(MemoryDcbRecorder::new())));
}
