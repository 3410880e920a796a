//! Input rules shared by the handlers; each failure is a 400 that says
//! which field and why.

use crate::ApiFailure;

/// Digits, optionally with a leading `+`, 6 to 20 of them.
pub(crate) fn phone(phone: &str) -> Result<&str, ApiFailure> {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    if (6..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(phone)
    } else {
        Err(ApiFailure::bad_request("phone must be 6 to 20 digits, optionally starting with +"))
    }
}

pub(crate) fn password(password: &str) -> Result<(), ApiFailure> {
    let length = password.chars().count();
    if (6..=128).contains(&length) {
        Ok(())
    } else {
        Err(ApiFailure::bad_request("password must be 6 to 128 characters"))
    }
}

/// Letters, digits and underscores, 3 to 32.
pub(crate) fn username(username: &str) -> Result<(), ApiFailure> {
    if (3..=32).contains(&username.len()) && username.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(ApiFailure::bad_request("username must be 3 to 32 letters, digits or underscores"))
    }
}

/// At most `max` characters.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<(), ApiFailure> {
    if value.chars().count() <= max {
        Ok(())
    } else {
        Err(ApiFailure::bad_request(format!("{field} must be at most {max} characters")))
    }
}

pub(crate) fn theme(theme: &str) -> Result<(), ApiFailure> {
    if matches!(theme, "auto" | "light" | "dark") {
        Ok(())
    } else {
        Err(ApiFailure::bad_request("theme must be auto, light or dark"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules() {
        assert!(super::phone("13800138000").is_ok());
        assert!(super::phone("+8613800138000").is_ok());
        assert!(super::phone("12345").is_err());
        assert!(super::phone("1380013800a").is_err());
        assert!(super::username("alice_1").is_ok());
        assert!(super::username("al").is_err());
        assert!(super::username("alice!").is_err());
        assert!(super::password("12345").is_err());
        assert!(super::text("bio", "短", 1).is_ok());
        assert!(super::text("bio", "短短", 1).is_err());
    }
}
