//! berth-auth: request authentication and authorization for berth.
//!
//! * [`verify`] / [`verify_request`] check an AWS Signature Version 4 signature — the
//!   `Authorization: AWS4-HMAC-SHA256 …` header form or a presigned URL — against keys
//!   supplied through [`KeyLookup`], and return a [`VerifiedRequest`] (key id, [`Role`],
//!   region and service of the credential scope).
//! * [`authorize`] / [`VerifiedRequest::authorize`] check a [`Role`] against an operation
//!   using the tables in [`role`].
//! * Every refusal is an [`AuthError`] carrying AWS's error code, message and HTTP status.
//! * [`generate_access_key_id`], [`generate_secret_access_key`] and
//!   [`write_credentials_file`] make and store key material.
//!
//! Typical use in the HTTP layer:
//!
//! ```
//! use berth_auth::{verify, AuthError, Role};
//! use std::time::SystemTime;
//!
//! fn handle(req: &http::Request<bytes_like::Body>) -> Result<(), AuthError> {
//!     let keys = |akid: &str| (akid == "AKIAEXAMPLE").then(|| ("secret".to_owned(), Role::Admin));
//!     let who = berth_auth::verify_request(req, &keys, SystemTime::now())?;
//!     who.authorize("123456789012", "AmazonEC2ContainerServiceV20141113", "ListClusters")?;
//!     Ok(())
//! }
//! # mod bytes_like { pub type Body = Vec<u8>; }
//! # let req = http::Request::new(Vec::new());
//! # assert_eq!(handle(&req).unwrap_err().code(), "MissingAuthenticationTokenException");
//! ```

#![warn(missing_docs)]

mod error;
mod keys;
pub mod role;
mod sigv4;
mod time;

pub use error::{
    AuthError, MAX_CLOCK_SKEW, MISSING_AUTHENTICATION_TOKEN_MESSAGE, SIGNATURE_MISMATCH_MESSAGE,
    UNRECOGNIZED_CLIENT_MESSAGE,
};
pub use keys::{
    generate_access_key_id, generate_secret_access_key, merge_credentials, parse_credentials,
    read_credentials_file, read_credentials_profile, write_credentials_file, CredentialsProfile,
};
pub use role::{authorize, is_allowed, principal_arn, service_prefix, ParseRoleError, Role};
pub use sigv4::{
    verify, verify_request, KeyLookup, VerifiedRequest, ALGORITHM, MAX_PRESIGNED_EXPIRES,
};
pub use time::{format_amz_date, parse_amz_date, parse_http_date};
