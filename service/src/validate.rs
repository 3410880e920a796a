//! Input rules of the domain, shared by every use case and dialect; each
//! failure is [`ServiceError::Invalid`] saying which field and why.

use chrono::Datelike;

use crate::ServiceError;

/// Digits, optionally with a leading `+`, 6 to 20 of them.
pub fn phone(phone: &str) -> Result<&str, ServiceError> {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    if (6..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(phone)
    } else {
        Err(ServiceError::Invalid("phone must be 6 to 20 digits, optionally starting with +".into()))
    }
}

pub fn password(password: &str) -> Result<(), ServiceError> {
    let length = password.chars().count();
    if (6..=128).contains(&length) {
        Ok(())
    } else {
        Err(ServiceError::Invalid("password must be 6 to 128 characters".into()))
    }
}

/// An address of the shape `local@domain.tld`, at most 254 characters,
/// no spaces: enough to refuse typos and abuse; delivery is not tried.
pub fn email(email: &str) -> Result<(), ServiceError> {
    let email = email.trim();
    let well_formed = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.split('.').count() >= 2
                && domain.split('.').all(|label| !label.is_empty())
        });
    if well_formed {
        Ok(())
    } else {
        Err(ServiceError::Invalid("email must be an address like ann@example.com".into()))
    }
}

/// Letters, digits and underscores, 3 to 32.
pub fn username(username: &str) -> Result<(), ServiceError> {
    if (3..=32).contains(&username.len()) && username.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(ServiceError::Invalid("username must be 3 to 32 letters, digits or underscores".into()))
    }
}

/// At most `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ServiceError> {
    if value.chars().count() <= max {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!("{field} must be at most {max} characters")))
    }
}

pub fn theme(theme: &str) -> Result<(), ServiceError> {
    if matches!(theme, "auto" | "light" | "dark") {
        Ok(())
    } else {
        Err(ServiceError::Invalid("theme must be auto, light or dark".into()))
    }
}

/// A birthday: a real `YYYY-MM-DD` date, not in the future, not before 1900.
pub fn birthday(birthday: &str, now: protocol::time::Millis) -> Result<(), ServiceError> {
    let invalid = || ServiceError::Invalid("birthday must be a past date as YYYY-MM-DD".into());
    let date = chrono::NaiveDate::parse_from_str(birthday, "%Y-%m-%d").map_err(|_| invalid())?;
    let today = chrono::DateTime::from_timestamp_millis(now).map(|at| at.date_naive()).ok_or_else(invalid)?;
    if birthday.len() != 10 || date > today || date.year() < 1900 {
        return Err(invalid());
    }
    Ok(())
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
