//! Loading a QAPI schema file for `qmpd --schema FILE`; serving it is the driver's
//! ([`qmp_driver::qapi`], re-exported here).

use std::path::Path;
use std::sync::Arc;

use qmp_core::server::qapi::QapiSchema;

pub use qmp_driver::qapi::*;

/// Read and import a `query-qmp-schema` reply (or its `return` list) from `path`.
pub fn load_schema(path: &Path) -> Result<Arc<QapiSchema>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    QapiSchema::from_json(&json)
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}
