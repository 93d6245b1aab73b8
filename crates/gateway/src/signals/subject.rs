//! The subject of a security event: SSF 1.0's top-level `sub_id`, or CAEP's older per-event
//! `subject`, in the RFC 9493 formats the token cache is indexed by.

use serde_json::Value;

use crate::tokens::SubjectId;

/// The identifiers `subject` names: one for a simple format, several for `aliases` (RFC 9493
/// §3.2.7); a CAEP `complex` subject (CAEP 1.0 §3) names its `user`. Empty: a format the
/// index does not know (`phone_number`, `account`, `did`, `uri`...).
pub(super) fn identifiers(subject: &Value) -> Vec<SubjectId> {
    let text = |name: &str| {
        subject
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    // Older CAEP drafts name the format `subject_type`.
    let format = subject
        .get("format")
        .or_else(|| subject.get("subject_type"))
        .and_then(Value::as_str);
    match format {
        Some("iss_sub") => match (text("iss"), text("sub")) {
            (Some(iss), Some(sub)) => vec![SubjectId::IssSub { iss, sub }],
            _ => Vec::new(),
        },
        Some("opaque") => text("id").map(SubjectId::Opaque).into_iter().collect(),
        Some("email") => text("email").map(SubjectId::Email).into_iter().collect(),
        Some("aliases") => subject
            .get("identifiers")
            .and_then(Value::as_array)
            .map(|all| all.iter().take(16).flat_map(identifiers).collect())
            .unwrap_or_default(),
        Some("complex") | None => subject.get("user").map(identifiers).unwrap_or_default(),
        Some(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_supported_format_names_its_identifiers() {
        assert_eq!(
            identifiers(&json!({"format": "iss_sub", "iss": "https://a", "sub": "u1"})),
            vec![SubjectId::IssSub {
                iss: "https://a".into(),
                sub: "u1".into()
            }]
        );
        assert_eq!(
            identifiers(&json!({"format": "opaque", "id": "u1"})),
            vec![SubjectId::Opaque("u1".into())]
        );
        assert_eq!(
            identifiers(&json!({"subject_type": "email", "email": "u@x"})),
            vec![SubjectId::Email("u@x".into())]
        );
        assert_eq!(
            identifiers(&json!({"format": "complex",
                "user": {"format": "email", "email": "u@x"},
                "session": {"format": "opaque", "id": "s1"}})),
            vec![SubjectId::Email("u@x".into())]
        );
        assert_eq!(
            identifiers(&json!({"format": "aliases", "identifiers": [
                {"format": "email", "email": "u@x"}, {"format": "opaque", "id": "u1"}]})),
            vec![
                SubjectId::Email("u@x".into()),
                SubjectId::Opaque("u1".into())
            ]
        );
        assert!(identifiers(&json!({"format": "phone_number", "phone_number": "+1"})).is_empty());
        assert!(identifiers(&json!({"format": "iss_sub", "iss": "https://a"})).is_empty());
    }
}
