//! Settings a link can carry: each is a signal bound to a URL query key, registered once
//! where it is made. Its value is read from the address bar when the page opens, and every
//! change is written back (keys at their defaults are left out), so a link copied from the
//! address bar reproduces the view. The token is never a URL key.

use std::cell::RefCell;

use leptos::prelude::*;

use crate::i18n::Lang;

/// A value as it appears in the query.
pub trait UrlValue: Clone + PartialEq + Send + Sync + 'static {
    fn to_url(&self) -> String;
    fn from_url(s: &str) -> Option<Self>;
}

impl UrlValue for String {
    fn to_url(&self) -> String {
        self.clone()
    }
    fn from_url(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
}

impl UrlValue for bool {
    fn to_url(&self) -> String {
        if *self { "1" } else { "0" }.into()
    }
    fn from_url(s: &str) -> Option<Self> {
        match s {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        }
    }
}

impl UrlValue for Lang {
    fn to_url(&self) -> String {
        self.code().into()
    }
    fn from_url(s: &str) -> Option<Self> {
        Some(Lang::parse(s))
    }
}

type Entry = Box<dyn Fn() -> Option<(&'static str, String)>>;

thread_local! {
    /// Every registered key: reads its signal (tracked) and gives (key, value) unless default.
    static KEYS: RefCell<Vec<Entry>> = const { RefCell::new(vec![]) };
}

/// The value of `key` in the page's query, if present.
pub fn query_value(key: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(key)
}

/// A signal bound to the URL key `key`: starts from the query (or `default`), written back
/// on change.
pub fn url_signal<T: UrlValue>(key: &'static str, default: T) -> RwSignal<T> {
    let start = query_value(key)
        .and_then(|s| T::from_url(&s))
        .unwrap_or_else(|| default.clone());
    let sig = RwSignal::new(start);
    KEYS.with(|k| {
        k.borrow_mut().push(Box::new(move || {
            let v = sig.get();
            (v != default).then(|| (key, v.to_url()))
        }))
    });
    sig
}

/// A `String` key (the common case).
pub fn url_text(key: &'static str, default: &str) -> RwSignal<String> {
    url_signal(key, default.to_string())
}

/// Keep the address bar in step with every registered key (call once, after the panels).
pub fn sync_address_bar() {
    Effect::new(move |_| {
        let Ok(params) = web_sys::UrlSearchParams::new() else {
            return;
        };
        let pairs: Vec<(&str, String)> =
            KEYS.with(|k| k.borrow().iter().filter_map(|f| f()).collect());
        for (k, v) in pairs {
            params.append(k, &v);
        }
        if let Some(w) = web_sys::window() {
            let q = params.to_string().as_string().unwrap_or_default();
            let path = w.location().pathname().unwrap_or_default();
            let url = if q.is_empty() {
                path
            } else {
                format!("{path}?{q}")
            };
            let _ = w.history().and_then(|h| {
                h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url))
            });
        }
    });
}
