//! JSON bodies of the HTTP API (accounts, auth, devices, media), shared by server and clients.
//!
//! Every error response has the body [`ApiError`] with a stable `code` (an [`ErrorCode`] name).
//! The types derive `utoipa::ToSchema`, so the server's OpenAPI document (`/v1/openapi.json`)
//! describes exactly these bodies; their doc comments are its descriptions.
//!
//! [`ErrorCode`]: crate::pb::ErrorCode

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/auth/request-code`: send a one-time code to a phone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeRequest {
    /// E.164 phone number.
    #[schema(example = "+14155550101")]
    pub phone: String,
}

/// Answer to [`CodeRequest`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeRequested {
    /// Seconds until the code expires.
    pub expires_in_s: u64,
}

/// `POST /v1/account/delete`: delete the caller's account, re-verified with the one-time code
/// `POST /v1/account/delete/request-code` sent to its phone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountDeleteRequest {
    /// The code sent to the account's phone (on a dev-mode server always 000000).
    pub code: String,
}

/// `POST /v1/auth/verify`: exchange a code for device credentials.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// E.164 phone number the code was sent to.
    #[schema(example = "+14155550101")]
    pub phone: String,
    /// The one-time code (`000000` on a dev-mode server).
    #[schema(example = "000000")]
    pub code: String,
    /// A label for the new device ("laptop").
    #[serde(default)]
    pub device_name: String,
    /// Register this device as the account's new primary (a new phone): every device of the
    /// account is logged out. Needs `pin` when the number has a registration PIN. Without it,
    /// a login to an existing account links a companion that waits for the primary's approval.
    #[serde(default)]
    pub new_primary: bool,
    /// The registration PIN, for `new_primary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// Answer (202) to a verify that links a companion device: it waits for the primary's approval.
/// Show `link_code` (and a QR code of it) on the new device; the primary approves it with
/// `POST /v1/devices/links/{link_code}/approve`; meanwhile collect with `POST /v1/auth/link`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct LinkPending {
    /// The account the device asks to join.
    pub account_id: u64,
    /// The short code the primary approves ("K7QF-M2XD").
    pub link_code: String,
    /// The secret that collects the credentials (only the new device knows it).
    pub link_secret: String,
    /// Seconds until the code expires.
    pub expires_in_s: u64,
}

/// `POST /v1/auth/link`: collect the credentials of an approved link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkCollectRequest {
    /// From [`LinkPending`].
    pub account_id: u64,
    /// From [`LinkPending`].
    pub link_code: String,
    /// From [`LinkPending`].
    pub link_secret: String,
}

/// A link waiting for the primary (`GET /v1/devices/links`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PendingLinkInfo {
    /// The code the new device shows.
    pub link_code: String,
    /// The new device's label.
    pub device_name: String,
    /// When it expires, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

/// `PUT /v1/account/pin`: set the registration PIN.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PinRequest {
    /// 4 to 32 digits.
    #[schema(example = "482916")]
    pub pin: String,
}

/// Who may see a profile.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProfilePrivacy {
    /// Any account.
    #[default]
    Everyone,
    /// The accounts in the owner's contact list.
    Contacts,
    /// Only the owner's own devices.
    Nobody,
}

/// `PUT /v1/profile`: change the caller's profile; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ProfileUpdate {
    /// Display name (`profiles.display_name_chars_max`, 64 characters by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// About text (`profiles.about_chars_max`, 140 characters by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// Media id of an uploaded image (64 lowercase hex digits), or "" to remove the photo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo_media_id: Option<String>,
    /// Who may see the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<ProfilePrivacy>,
}

/// A profile as the caller may see it (`GET /v1/profiles/{account_id}`, `PUT /v1/profile`).
/// A profile the caller may not see has empty fields and `visible` false.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ProfileView {
    /// Whose.
    pub account_id: u64,
    /// Whether the caller may see it.
    pub visible: bool,
    /// Display name.
    pub display_name: String,
    /// About text.
    pub about: String,
    /// Media id of the photo, or empty.
    pub photo_media_id: String,
    /// The owner's choice; only shown to the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<ProfilePrivacy>,
    /// Last change, ms since the Unix epoch (0: never set).
    pub updated_at_ms: u64,
}

/// Device credentials: answer to verify and refresh.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Credentials {
    /// Internal account id.
    pub account_id: u64,
    /// Device number within the account (1 is the first device).
    pub device_id: u32,
    /// The account's phone number.
    pub phone: String,
    /// Short-lived signed token for `Hello.token` and `Authorization: Bearer`.
    pub access_token: String,
    /// When the access token expires, in ms since the Unix epoch.
    pub access_expires_at_ms: u64,
    /// Long-lived token to get a new access token; rotated on every use.
    pub refresh_token: String,
}

/// `POST /v1/auth/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The current refresh token.
    pub refresh_token: String,
}

/// One device of an account, as listed by `GET /v1/devices`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DeviceInfo {
    /// Device number within the account.
    pub device_id: u32,
    /// Label given at login.
    pub name: String,
    /// Whether this is the primary device.
    pub primary: bool,
    /// When the device was linked, in ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// `GET /v1/accounts/{phone}`: the account behind a phone number and its current devices (what a
/// client needs to build per-device payloads).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AccountInfo {
    /// Internal account id.
    pub account_id: u64,
    /// E.164 phone number.
    pub phone: String,
    /// Current device ids.
    pub device_ids: Vec<u32>,
}

/// The body of every HTTP error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ApiError {
    /// Stable error name, e.g. `ERROR_CODE_RATE_LIMITED`.
    #[schema(example = "ERROR_CODE_RATE_LIMITED")]
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// When a retry can succeed, for rate limits and overload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// `GET /v1/info`: where and how to connect, so a client needs only the HTTP URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ServerInfo {
    /// The node that answered.
    pub node_id: String,
    /// Advertised address of the framed TCP listener (`host:port`).
    pub tcp_addr: String,
    /// Whether the TCP listener expects TLS.
    pub tls: bool,
    /// Path of the WebSocket endpoint on this HTTP server.
    pub ws_path: String,
    /// Protocol versions spoken, as `major.minor`.
    pub versions: Vec<String>,
    /// Whether the server runs in dev mode (fixed one-time code `000000`).
    pub dev: bool,
}

/// `POST /v1/media/uploads`: start (or, with the same idempotency key, find again) an upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct UploadRequest {
    /// `image`, `voice`, `video`, `document` or `thumbnail`: decides the size limit and, for
    /// plaintext uploads, what the bytes must look like.
    #[schema(example = "image")]
    pub kind: String,
    /// Exact size of the bytes to come.
    pub size_bytes: u64,
    /// Lowercase hex SHA-256 of the bytes to come; checked when the last byte arrives.
    pub sha256: String,
    /// `true` for client-encrypted bytes: stored as they are, never sniffed or processed.
    /// `false` (plaintext): checked against `kind`, and images are re-encoded without metadata
    /// and given a thumbnail.
    #[serde(default)]
    pub encrypted: bool,
    /// MIME type the client claims (plaintext uploads get the sniffed one instead).
    #[serde(default)]
    pub mime: String,
    /// Chosen by the client, unique per account: the same key answers the same upload, so a
    /// retried `POST` never starts a second one.
    pub idempotency_key: String,
}

/// Where an upload stands: the answer to starting it, to each chunk and to asking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct UploadState {
    /// Names the upload in `PATCH` and `GET /v1/media/uploads/{upload_id}`.
    pub upload_id: String,
    /// Bytes received and durable so far: the next chunk starts here.
    pub offset: u64,
    /// The declared size.
    pub size_bytes: u64,
    /// Once the last byte arrived and was checked: the stored blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaInfo>,
}

/// A stored blob.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct MediaInfo {
    /// The blob's id: the lowercase hex SHA-256 of the stored bytes (for plaintext images, of
    /// the re-encoded image without metadata, so it may differ from the uploaded hash).
    pub media_id: String,
    /// Its kind (`image`, …).
    pub kind: String,
    /// Stored size.
    pub size_bytes: u64,
    /// MIME type (sniffed for plaintext uploads).
    pub mime: String,
    /// Whether the bytes are client-encrypted.
    pub encrypted: bool,
    /// Plaintext images: pixels.
    #[serde(default)]
    pub width: u32,
    /// Plaintext images: pixels.
    #[serde(default)]
    pub height: u32,
    /// Plaintext images: the server-made thumbnail's media id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_id: Option<String>,
}

/// `GET /v1/media/{media_id}/url`: a signed, time-limited download URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct MediaUrl {
    /// Path and query to `GET` on this server (no `Authorization` needed): supports `Range`
    /// and `If-None-Match`.
    pub url: String,
    /// When the URL stops working, in ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// The blob's metadata.
    pub media: MediaInfo,
}

/// `POST /v1/push/targets`: make (provider, token) the calling device's push target, replacing
/// any earlier one (the HTTP form of the socket's `PushOp.register`, with the same checks).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushTargetRequest {
    /// `webhook`, `fcm` or `apns` (as the server is configured to offer).
    #[schema(example = "webhook")]
    pub provider: String,
    /// The webhook's `https://` URL, the FCM registration token or the APNs device token (hex).
    #[schema(example = "https://up.example.org/up/abc")]
    pub token: String,
}

/// Answer to [`PushTargetRequest`]: the target now stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushTargetView {
    /// The device it wakes (the caller).
    pub device_id: u32,
    /// Its provider: `webhook`, `fcm` or `apns`.
    pub provider: String,
}
