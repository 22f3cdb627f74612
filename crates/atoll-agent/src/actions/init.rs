use super::{ActionCtx, ActionError, ErrorCode, InitArgs};
use serde_json::Value;
pub(super) async fn run(_ctx: &ActionCtx<'_>, _a: InitArgs) -> Result<Value, ActionError> {
    Err(ActionError::new(ErrorCode::Failed, "todo"))
}
