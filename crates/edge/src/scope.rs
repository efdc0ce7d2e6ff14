//! The SigV4 credential scope of a request, read before anything else (and before the body): its
//! service name picks the service, its region the namespace. Borrowed from the request, no
//! allocation on the header path.

use http::{HeaderMap, Uri};
use std::borrow::Cow;

/// `<akid>/<date>/<region>/<service>/aws4_request`, as the request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope<'a> {
    pub region: Cow<'a, str>,
    pub service: Cow<'a, str>,
}

/// From `Authorization: AWS4-HMAC-SHA256 Credential=…` or a presigned URL's `X-Amz-Credential`.
pub fn credential_scope<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<CredentialScope<'a>> {
    if let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let rest = auth.split_once("Credential=")?.1;
        let cred = rest.split([',', ' ']).next()?;
        return parse(cred).map(|(region, service)| CredentialScope {
            region: Cow::Borrowed(region),
            service: Cow::Borrowed(service),
        });
    }
    let query = uri.query()?;
    let (_, cred) =
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "X-Amz-Credential")?;
    let (region, service) = parse(&cred)?;
    Some(CredentialScope {
        region: Cow::Owned(region.to_string()),
        service: Cow::Owned(service.to_string()),
    })
}

fn parse(cred: &str) -> Option<(&str, &str)> {
    let mut parts = cred.split('/');
    let _akid = parts.next()?;
    let _date = parts.next()?;
    let region = parts.next()?;
    let service = parts.next()?;
    (parts.next() == Some("aws4_request")).then_some((region, service))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn reads_the_header_form() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-2/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
            ),
        );
        let uri: Uri = "/".parse().unwrap();
        let s = credential_scope(&h, &uri).unwrap();
        assert_eq!((&*s.region, &*s.service), ("us-east-2", "ecs"));
    }

    #[test]
    fn reads_a_presigned_query() {
        let uri: Uri = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261207%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=x"
            .parse()
            .unwrap();
        let h = HeaderMap::new();
        let s = credential_scope(&h, &uri).unwrap();
        assert_eq!((&*s.region, &*s.service), ("eu-west-1", "s3"));
    }

    #[test]
    fn malformed_or_missing_is_none() {
        let mut h = HeaderMap::new();
        let uri: Uri = "/".parse().unwrap();
        assert!(credential_scope(&h, &uri).is_none());
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        assert!(credential_scope(&h, &uri).is_none());
        h.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1"),
        );
        assert!(credential_scope(&h, &uri).is_none());
    }
}
