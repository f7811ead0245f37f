//! A page's data: a `Resource` whose value the server sends with the HTML and the browser decodes when it
//! hydrates.
//!
//! Leptos's default resource codec decodes with `serde_json::from_str`, while server functions decode their
//! responses with `serde_json::from_slice`: two serde_json readers, so the wasm bundle carried two copies of
//! every response type's deserializer (a few KiB each). [`SliceJson`] decodes resources with `from_slice` too,
//! so each type's deserializer is compiled once. The encoding is unchanged (`serde_json::to_string`).

use std::future::Future;

use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use serde::{de::DeserializeOwned, Serialize};

/// JSON like Leptos's `JsonSerdeCodec`, decoded through the same reader as server function responses.
pub struct SliceJson;

impl<T: Serialize> Encoder<T> for SliceJson {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(val: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(val)
    }
}

impl<T: DeserializeOwned> Decoder<T> for SliceJson {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(val: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(val.as_bytes())
    }
}

/// A page's resource (see [`page_data`]).
pub type PageData<T> = Resource<T, SliceJson>;

/// `Resource::new`, with [`SliceJson`]: make it at the page's top and read it inside a `Transition`.
#[track_caller]
pub fn page_data<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> PageData<T>
where
    S: PartialEq + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

#[cfg(test)]
mod tests {
    use leptos::server::codee::string::JsonSerdeCodec;
    use leptos::server::codee::{Decoder, Encoder};

    use super::SliceJson;

    type Data = Result<Vec<(String, Option<u32>)>, String>;

    /// The server's encoding is Leptos's own, and the browser reads back what it wrote, text and errors alike.
    #[test]
    fn encodes_as_leptos_and_decodes_what_it_encodes() {
        for value in [
            Ok(vec![
                ("ünïcode \"quoted\"".to_owned(), Some(7)),
                ("none".to_owned(), None),
            ]),
            Err("the clusters could not be listed".to_owned()),
        ] {
            let encoded = <SliceJson as Encoder<Data>>::encode(&value).unwrap();
            assert_eq!(
                encoded,
                <JsonSerdeCodec as Encoder<Data>>::encode(&value).unwrap()
            );
            let decoded = <SliceJson as Decoder<Data>>::decode(&encoded).unwrap();
            assert_eq!(decoded, value);
        }
    }
}
