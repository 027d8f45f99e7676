//! A body the wire contract carries as a map, read into a typed value only from a map:
//! left alone, serde builds a struct from an array as readily as from a map.

use std::fmt;

use serde::de::{Deserialize, Deserializer, EnumAccess, MapAccess, Visitor};

/// A `T` that was a map on the wire (or an enum variant with data, which serde writes as
/// a one-entry map); anything else is a decode error in serde's words ("invalid type:
/// sequence, expected struct Add").
pub(crate) struct MapOnly<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(Only(deserializer)).map(MapOnly)
    }
}

/// Hands `T`'s visitor a [`Maps`] in its place, whatever `T` asks for.
struct Only<D>(D);

/// Lets only a map (or an enum) through to the visitor it wraps.
struct Maps<V>(V);

macro_rules! forward {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Maps(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Only<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Maps(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Maps(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Maps(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Maps(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Maps(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Maps(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Everything but a map, an enum, or a wrapper around one falls to serde's default:
/// an "invalid type" error.
impl<'de, V: Visitor<'de>> Visitor<'de> for Maps<V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(formatter)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(data)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Only(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Only(deserializer))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;
    use serde_json::{json, Value};

    use super::MapOnly;
    use crate::domain::codec::{self, Encoding};

    #[derive(Deserialize, Debug, PartialEq)]
    struct Add {
        a: i64,
        b: i64,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Wrapped(Add);

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(tag = "kind")]
    enum Tagged {
        Sum { a: i64 },
    }

    /// An envelope around the body, as the wire has it.
    #[derive(Deserialize)]
    #[serde(bound(deserialize = "T: Deserialize<'de>"))]
    struct Envelope<T> {
        params: MapOnly<T>,
    }

    /// `value` as the params of an envelope, read back from each encoding.
    fn both<T: for<'de> Deserialize<'de>>(value: &Value) -> Vec<Result<T, String>> {
        [Encoding::MessagePack, Encoding::Json]
            .into_iter()
            .map(|encoding| {
                let bytes = encoding.encode(&json!({ "params": value })).unwrap();
                codec::decode::<Envelope<T>>(&bytes)
                    .map(|envelope| envelope.params.0)
                    .map_err(|e| e.message().to_owned())
            })
            .collect()
    }

    #[test]
    fn maps_read_as_before() {
        let add = json!({"a": 1, "b": 2});
        for result in both::<Add>(&add) {
            assert_eq!(result.unwrap(), Add { a: 1, b: 2 });
        }
        for result in both::<Wrapped>(&add) {
            assert_eq!(result.unwrap(), Wrapped(Add { a: 1, b: 2 }));
        }
        for result in both::<Option<Add>>(&add) {
            assert_eq!(result.unwrap(), Some(Add { a: 1, b: 2 }));
        }
        for result in both::<Value>(&json!({"x": [1, {"y": 2}]})) {
            assert_eq!(result.unwrap(), json!({"x": [1, {"y": 2}]}));
        }
        for result in both::<HashMap<String, i64>>(&add) {
            assert_eq!(result.unwrap().len(), 2);
        }
        for result in both::<Tagged>(&json!({"kind": "Sum", "a": 3})) {
            assert_eq!(result.unwrap(), Tagged::Sum { a: 3 });
        }
    }

    #[test]
    fn anything_else_is_refused_in_serdes_words() {
        for result in both::<Add>(&json!([1, 2])) {
            let err = result.unwrap_err();
            assert!(
                err.contains("invalid type: sequence, expected struct Add"),
                "{err}"
            );
        }
        for result in both::<Value>(&json!([1, 2])) {
            assert!(result.is_err());
        }
        for result in both::<String>(&json!("text")) {
            let err = result.unwrap_err();
            assert!(err.contains("invalid type: string"), "{err}");
        }
        for result in both::<i64>(&json!(42)) {
            assert!(result.is_err());
        }
        for result in both::<Option<Add>>(&json!(null)) {
            assert!(result.is_err());
        }
    }
}
