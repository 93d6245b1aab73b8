//! HTML of the sign-in, consent and error pages: escaped, no JavaScript, strict security headers.

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::StatusCode;
use http_body_util::Full;

use super::config::Client;
use super::parties::Party;
use super::web::Response;

/// Escapes text for HTML element content and double-quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The stylesheet, served at `{issuer}/authorize/style.css` (CSP allows only same-origin styles).
pub(crate) const STYLE: &str = r#"*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f3f4f6;color:#111827}
main{max-width:34rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.12)}
@media (max-width:36rem){main{margin:0;border-radius:0;min-height:100vh}}
h1{font-size:1.4rem;margin:.2rem 0 .6rem}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
h3{font-size:.8rem;margin:.8rem 0 .2rem;color:#4b5563;text-transform:uppercase;letter-spacing:.05em}
.app{display:flex;gap:.9rem;align-items:center}.app img{width:56px;height:56px;border-radius:10px;object-fit:contain;background:#f9fafb}
.muted{color:#4b5563;font-size:.92rem}.party img{width:28px;height:28px;object-fit:contain;vertical-align:middle;margin-right:.4rem}
ul{padding-left:0;list-style:none;margin:.2rem 0}li{padding:.35rem .5rem;border-radius:6px;margin:.2rem 0;background:#f9fafb}
li.new{background:#ecfdf5;border-left:4px solid #059669}li.old{background:#f3f4f6;border-left:4px solid #9ca3af}
code{font-size:.9em;background:#eef2ff;padding:.05rem .3rem;border-radius:4px}
label{display:block;font-weight:600;margin:.8rem 0 .2rem}
input[type=text],input[type=password]{width:100%;padding:.6rem;font-size:1rem;border:1px solid #9ca3af;border-radius:6px}
.buttons{display:flex;gap:.7rem;margin-top:1.4rem;flex-wrap:wrap}
button{flex:1;min-width:8rem;padding:.7rem 1rem;font-size:1rem;border-radius:8px;border:1px solid #1d4ed8;cursor:pointer}
button.primary{background:#1d4ed8;color:#fff}button.secondary{background:#fff;color:#1d4ed8}
button:focus,input:focus,a:focus{outline:3px solid #f59e0b;outline-offset:2px}
.error{background:#fef2f2;color:#991b1b;border:1px solid #fecaca;padding:.6rem;border-radius:6px}
a{color:#1d4ed8}
"#;

/// A complete page with security headers. `form_origins` are extra `form-action` sources (the
/// redirect URI's origin, so the browser may follow the redirect that answers the form).
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    style_href: &str,
    body: &str,
    form_origins: &[String],
    dev_mode: bool,
) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"{}\"></head>\
         <body><main>{body}</main></body></html>\n",
        escape(title),
        escape(style_href)
    );
    let mut response = http::Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let mut form_action = String::from("'self'");
    for origin in form_origins {
        // Origins come from validated redirect URIs; keep only characters a CSP source allows.
        if origin
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":/.-+[]_".contains(c))
        {
            let _ = write!(form_action, " {origin}");
        }
    }
    let img = if dev_mode {
        "'self' https: http:"
    } else {
        "'self' https:"
    };
    let csp = format!(
        "default-src 'self'; script-src 'none'; object-src 'none'; style-src 'self'; \
         img-src {img}; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert("content-security-policy", v);
    }
    response
}

/// An error page for requests that cannot be redirected back (unknown client, bad redirect URI).
pub(crate) fn error_body(title: &str, message: &str) -> String {
    format!(
        "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p>\
         <p class=\"muted\">You can close this page and return to the application.</p>",
        escape(title),
        escape(message)
    )
}

/// The name the user should see first: the end-user application's, else the client's.
pub(crate) fn display_name(client: &Client) -> &str {
    client
        .parties
        .end_user_application
        .as_ref()
        .map(|p| p.name.as_str())
        .or(client.parties.client_name.as_deref())
        .unwrap_or(&client.id)
}

fn hidden(tx: &str, csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"tx\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(tx),
        escape(csrf)
    )
}

/// The sign-in form.
pub(crate) fn login_body(
    action: &str,
    tx: &str,
    csrf: &str,
    client: &Client,
    error: Option<&str>,
) -> String {
    let mut body = format!(
        "<h1>Sign in</h1><p class=\"muted\">to continue to <strong>{}</strong></p>",
        escape(display_name(client))
    );
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(error)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{}\">{}\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <div class=\"buttons\"><button type=\"submit\" class=\"primary\">Sign in</button></div></form>",
        escape(action),
        hidden(tx, csrf)
    );
    body
}

/// What the consent page shows beyond the client itself.
#[derive(Debug)]
pub(crate) struct ConsentView<'a> {
    pub(crate) action: &'a str,
    pub(crate) tx: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) user: &'a str,
    pub(crate) new: Vec<String>,
    pub(crate) already: Vec<String>,
}

fn logo(party_name: &str, logo_uri: Option<&str>) -> String {
    logo_uri.map_or_else(String::new, |uri| {
        format!(
            "<img src=\"{}\" alt=\"Logo of {}\">",
            escape(uri),
            escape(party_name)
        )
    })
}

fn linked(name: &str, uri: Option<&str>) -> String {
    match uri {
        Some(uri) => format!(
            "<a href=\"{}\" rel=\"noopener noreferrer\" target=\"_blank\">{}</a>",
            escape(uri),
            escape(name)
        ),
        None => escape(name),
    }
}

fn party_item(p: &Party) -> String {
    format!(
        "<li class=\"party\">{}{}</li>",
        logo(&p.name, p.logo_uri.as_deref()),
        linked(&p.name, p.uri.as_deref())
    )
}

/// The consent page (intermediary metadata draft §6: the end-user application is the most
/// prominent, then the client and every intermediary, with logos and links).
pub(crate) fn consent_body(client: &Client, view: &ConsentView<'_>) -> String {
    let parties = &client.parties;
    let client_name = parties.client_name.as_deref().unwrap_or(&client.id);
    let mut body = String::new();
    let (headline, headline_uri, headline_logo) = match &parties.end_user_application {
        Some(eua) => (
            eua.name.as_str(),
            eua.uri.as_deref(),
            eua.logo_uri.as_deref(),
        ),
        None => (
            client_name,
            parties.client_uri.as_deref(),
            parties.logo_uri.as_deref(),
        ),
    };
    let _ = write!(
        body,
        "<div class=\"app\">{}<div><h1>Allow {} to access your account?</h1>\
         <p class=\"muted\">Signed in as <strong>{}</strong></p></div></div>",
        logo(headline, headline_logo),
        linked(headline, headline_uri),
        escape(view.user)
    );
    body.push_str("<section aria-labelledby=\"who\"><h2 id=\"who\">Who gets access</h2><ul>");
    if parties.end_user_application.is_some() {
        let _ = write!(
            body,
            "<li class=\"party\">{}{} <span class=\"muted\">(the application you are using)</span></li>",
            logo(headline, headline_logo),
            linked(headline, headline_uri)
        );
    }
    let _ = write!(
        body,
        "<li class=\"party\">{}{} <span class=\"muted\">(OAuth client <code>{}</code>)</span></li></ul>",
        logo(client_name, parties.logo_uri.as_deref()),
        linked(client_name, parties.client_uri.as_deref()),
        escape(&client.id)
    );
    if !parties.intermediaries.is_empty() {
        body.push_str(
            "<h2 id=\"via\">Your data also passes through</h2><ul aria-labelledby=\"via\">",
        );
        for p in &parties.intermediaries {
            body.push_str(&party_item(p));
        }
        body.push_str("</ul>");
    }
    body.push_str(
        "</section><section aria-labelledby=\"scopes\"><h2 id=\"scopes\">Access requested</h2>",
    );
    if !view.new.is_empty() {
        body.push_str("<h3>New</h3><ul>");
        for s in &view.new {
            let _ = write!(body, "<li class=\"new\"><code>{}</code></li>", escape(s));
        }
        body.push_str("</ul>");
    }
    if !view.already.is_empty() {
        body.push_str("<h3>Already granted</h3><ul>");
        for s in &view.already {
            let _ = write!(body, "<li class=\"old\"><code>{}</code></li>", escape(s));
        }
        body.push_str("</ul>");
    }
    if view.new.is_empty() && view.already.is_empty() {
        body.push_str("<p class=\"muted\">No specific access (sign-in only).</p>");
    }
    let _ = write!(
        body,
        "</section><form method=\"post\" action=\"{}\">{}<div class=\"buttons\">\
         <button type=\"submit\" name=\"decision\" value=\"approve\" class=\"primary\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button>\
         </div></form>",
        escape(view.action),
        hidden(view.tx, view.csrf)
    );
    body
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
