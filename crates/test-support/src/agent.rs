//! The browser agent, written once for every suite that drives the authority's pages: an HTTP
//! answer with its raw body, form posts, and a user agent that keeps the session cookie like a
//! browser and fills in the consent form.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use chaingate_authority::RunningAuthority;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Anything with pages at paths: an in-process authority, or a suite's wrapper around one.
pub trait Site {
    /// The absolute URL of `path`.
    fn url(&self, path: &str) -> String;
}

impl Site for RunningAuthority {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }
}

/// An HTTP answer with the raw body.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    pub fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }
    pub fn redirect_params(&self) -> HashMap<String, String> {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        let location = self.header("location");
        let query = location.split_once('?').map_or("", |(_, q)| q);
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }
    /// A field of a successful JSON answer.
    pub fn field(&self, name: &str) -> String {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.json()[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            .to_string()
    }
}

pub async fn request(req: http::Request<Full<Bytes>>) -> Page {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = client.request(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub fn encode(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

pub fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// POST a form with optional Basic auth.
pub async fn post_form(url: &str, auth: Option<&str>, params: &[(&str, &str)]) -> Page {
    let mut req = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(encode(params))))
        .unwrap();
    if let Some(auth) = auth {
        req.headers_mut()
            .insert("authorization", auth.parse().unwrap());
    }
    request(req).await
}

pub async fn get(url: &str) -> Page {
    request(http::Request::get(url).body(Full::default()).unwrap()).await
}

/// A user agent that keeps the session cookie, like a browser.
#[derive(Debug, Default)]
pub struct Agent {
    pub cookie: Option<String>,
}

impl Agent {
    fn keep_cookie(&mut self, page: &Page) {
        if let Some(set) = page.headers.get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
            self.cookie = Some(pair);
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let mut req = http::Request::get(url).body(Full::default()).unwrap();
        if let Some(c) = &self.cookie {
            req.headers_mut().insert("cookie", c.parse().unwrap());
        }
        let page = request(req).await;
        self.keep_cookie(&page);
        page
    }

    pub async fn post(&mut self, url: &str, params: &[(&str, &str)]) -> Page {
        let mut req = http::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(encode(params))))
            .unwrap();
        if let Some(c) = &self.cookie {
            req.headers_mut().insert("cookie", c.parse().unwrap());
        }
        let page = request(req).await;
        self.keep_cookie(&page);
        page
    }

    /// Submits the consent form on `consent` with `decision` (`approve` or `deny`).
    pub async fn decide(&mut self, site: &impl Site, consent: &Page, decision: &str) -> Page {
        let (tx, csrf) = (consent.hidden("tx"), consent.hidden("csrf"));
        let form = [
            ("tx", tx.as_str()),
            ("csrf", csrf.as_str()),
            ("decision", decision),
        ];
        self.post(&site.url("/authorize/decision"), &form).await
    }
}
