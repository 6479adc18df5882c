//! A real store whose appends fail on demand: the embedded engine in a temporary directory, with
//! its append-fault switch ([`AppendFaults`], feature `sim` of `iris-store`) handed to the test.
//! The switch counts the failures it injected, so a test waits for the fault to have struck
//! instead of sleeping.

use std::ops::Deref;
use std::sync::Arc;

use iris_store::embedded::{AppendFaults, FjallStore};
use tempfile::TempDir;

pub use iris_store::embedded::AppendFault;

/// The switch of a [`faulty_store`], holding its temporary directory: keep it for the test's
/// length (the directory goes with it).
pub struct FaultSwitch {
    faults: AppendFaults,
    _dir: TempDir,
}

impl Deref for FaultSwitch {
    type Target = AppendFaults;

    fn deref(&self) -> &AppendFaults {
        &self.faults
    }
}

/// A fresh embedded store in a temporary directory, and the switch that makes its appends fail.
pub fn faulty_store() -> (Arc<FjallStore>, FaultSwitch) {
    let dir = tempfile::tempdir().expect("create a temporary store dir");
    let store = FjallStore::open(dir.path(), Default::default()).expect("open fjall");
    let faults = store.append_faults();
    (Arc::new(store), FaultSwitch { faults, _dir: dir })
}
