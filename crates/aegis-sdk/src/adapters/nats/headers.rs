//! Conversion between our [`Headers`] and async-nats header maps.

use async_nats::HeaderMap;

use crate::ports::Headers;

pub(crate) fn to_nats(headers: &Headers) -> Option<HeaderMap> {
    if headers.is_empty() {
        return None;
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers.iter() {
        map.append(name, value);
    }
    Some(map)
}

pub(crate) fn from_nats(headers: Option<&HeaderMap>) -> Headers {
    match headers {
        None => Headers::new(),
        Some(map) => map
            .iter()
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |value| (name.to_string(), value.to_string()))
            })
            .collect(),
    }
}
