//! Reporting an account for abuse: [`Client::report`] files a report, optionally disclosing
//! messages this device received from the account (their content as the app shows it: with
//! end-to-end encryption the server has no other way to see them).

use iris_proto::pb::{self, client_op, server_event};

use crate::client::Client;
use crate::error::unexpected;
use crate::error::ClientError;

impl Client {
    /// Reports `account_id` with `reason` (at most 500 bytes), disclosing `messages` (at most
    /// 10, 64 KiB of content together, by default). The answer carries the report's id and
    /// whether this account had already reported that one within the server's window (then it
    /// counts once). Errors: `REPORT_INVALID` (oneself, unknown account, bounds),
    /// `RATE_LIMITED` (too many reports today).
    pub async fn report(
        &self,
        account_id: u64,
        reason: String,
        messages: Vec<pb::ReportedMessage>,
    ) -> Result<pb::ReportResult, ClientError> {
        let op = client_op::Op::Report(pb::Report { account_id, reason, messages });
        match self.op(op).await? {
            server_event::Event::ReportResult(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }
}
