//! The wire types shared by the `grade` CLI and the HTTP API (`serve`): one
//! [`Item`] in, one [`GradeResult`] out, with a [`Verdict`]. They are
//! defined once, in the `reward-api` crate, which the Rust client and the
//! trainer use too; they are re-exported here. With its `openapi` feature
//! (on here) they implement `utoipa::ToSchema`, so the served OpenAPI
//! document is generated from them.
//!
//! Unknown fields in an item are ignored, so trainers can pass their own
//! bookkeeping through. `id` and `problem_id` may be strings or integers and
//! are echoed back unchanged. An item's `tests` stay raw JSON in [`Item`];
//! [`crate::grade::Input`] reads them as [`CodeTests`].

pub use reward_api::{
    AssertReport, CodeTests, CompareMode, ErrorBody, ExtractMode, GradeResult, Id, IoCase, Item, RewardMode,
    RewardRequest, RewardResponse, Task, Verdict,
};
