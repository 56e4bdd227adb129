//! URLs as shown to anyone.

/// A URL as shown to anyone (`/status`, logs, debug output): without the
/// user name and password it may carry.
pub fn url_without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string().trim_end_matches('/').to_owned()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::url_without_credentials;

    #[test]
    fn an_internationalised_host_is_shown_in_its_ascii_form() {
        // UTS 46 (idna, under url): lower-cased and punycoded, as upstreams are dialled.
        assert_eq!(
            url_without_credentials("https://user:secret@Bücher.example/v1"),
            "https://xn--bcher-kva.example/v1"
        );
        assert_eq!(
            url_without_credentials("https://user:secret@ÖBB.at:8443/v1"),
            "https://xn--bb-eka.at:8443/v1"
        );
    }
}
