use super::{ActionCtx, ActionError, ErrorCode, SwitchoverArgs};
use serde_json::Value;
pub(super) async fn run(_ctx: &ActionCtx<'_>, _a: SwitchoverArgs) -> Result<Value, ActionError> {
    Err(ActionError::new(ErrorCode::Failed, "todo"))
}
