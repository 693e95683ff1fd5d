//! The wire format of `POST /v1/reward`: [`Item`] in,
//! [`GradeResult`](crate::GradeResult) out,
//! wrapped in [`RewardRequest`](crate::RewardRequest) /
//! [`RewardResponse`](crate::RewardResponse).
//!
//! The types are `reward-api`'s, the one definition the server uses too
//! (re-exported at the crate root); this module only adds what the client
//! needs to send a batch.

use serde::Serialize;

use reward_api::Item;

/// A borrowed request body, so a batch is serialized without cloning items.
#[derive(Serialize)]
pub(crate) struct RewardRequestRef<'a> {
    pub(crate) items: &'a [Item],
}

#[cfg(test)]
mod tests {
    use super::*;
    use reward_api::{ErrorBody, RewardRequest};
    use serde_json::json;

    #[test]
    fn request_envelope() {
        let items = [Item::math("1", "1"), Item::math("2", "3").id("b")];
        let borrowed = serde_json::to_value(RewardRequestRef { items: &items }).unwrap();
        let owned = serde_json::to_value(RewardRequest {
            items: items.to_vec(),
        })
        .unwrap();
        assert_eq!(borrowed, owned);
        assert_eq!(
            borrowed,
            json!({"items": [
                {"task": "math", "response": "1", "answer": "1"},
                {"id": "b", "task": "math", "response": "2", "answer": "3"},
            ]})
        );
        let err: ErrorBody = serde_json::from_str(r#"{"error": "overloaded"}"#).unwrap();
        assert_eq!(err.error, "overloaded");
    }
}
