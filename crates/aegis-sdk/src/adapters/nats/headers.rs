//! Conversion between our [`Headers`] and async-nats header maps.

use async_nats::HeaderMap;

use crate::ports::Headers;

/// `headers` as async-nats takes them; `None` when there are none.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a header that
/// cannot go on the wire (async-nats would panic on it).
pub(crate) fn to_nats(headers: &Headers) -> crate::Result<Option<HeaderMap>> {
    if headers.is_empty() {
        return Ok(None);
    }
    headers.check()?;
    let mut map = HeaderMap::new();
    for (name, value) in headers.iter() {
        map.append(name, value);
    }
    Ok(Some(map))
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
