//! E.164 phone numbers, the public identity of an account.

/// Why a string is not an E.164 phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// The number does not start with `+`.
    #[error("phone number must start with '+' (E.164), got {0:?}")]
    MissingPlus(String),
    /// Something other than digits follows the `+`.
    #[error("phone number may contain only digits after '+', got {0:?}")]
    NotDigits(String),
    /// E.164 allows 8 to 15 digits here (country code included), and no leading zero.
    #[error("phone number must have 8 to 15 digits and no leading 0, got {0:?}")]
    BadLength(String),
}

/// Checks that `phone` is `+` followed by 8–15 digits, the first not 0, and returns it trimmed.
pub fn validate(phone: &str) -> Result<String, PhoneError> {
    let phone = phone.trim();
    let Some(digits) = phone.strip_prefix('+') else {
        return Err(PhoneError::MissingPlus(phone.to_owned()));
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PhoneError::NotDigits(phone.to_owned()));
    }
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(PhoneError::BadLength(phone.to_owned()));
    }
    Ok(phone.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_e164_and_rejects_everything_else() {
        assert_eq!(validate(" +14155550123 ").unwrap(), "+14155550123");
        assert!(matches!(validate("14155550123"), Err(PhoneError::MissingPlus(_))));
        assert!(matches!(validate("+1415-555"), Err(PhoneError::NotDigits(_))));
        assert!(matches!(validate("+1234567"), Err(PhoneError::BadLength(_))));
        assert!(matches!(validate("+0123456789"), Err(PhoneError::BadLength(_))));
        assert!(matches!(validate("+1234567890123456"), Err(PhoneError::BadLength(_))));
        assert!(matches!(validate("+"), Err(PhoneError::BadLength(_))));
    }
}
