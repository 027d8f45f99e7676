//! Whether a value serializes to a map, found without serializing it: the wire contract
//! carries RPC params as a map, and a caller is told so before anything is sent.

use std::fmt;

use serde::ser::{self, Impossible, Serialize, Serializer};

/// Whether `value` serializes to a map (a struct, a map, or an enum variant with data,
/// which serde writes as a one-entry map), in both of the SDK's encodings.
pub(crate) fn serializes_to_map<T: Serialize + ?Sized>(value: &T) -> bool {
    value.serialize(Probe).is_ok()
}

/// Not a map (or the value's own serialization failed).
#[derive(Debug)]
struct NotMap;

impl fmt::Display for NotMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a map")
    }
}

impl std::error::Error for NotMap {}

impl ser::Error for NotMap {
    fn custom<M: fmt::Display>(_: M) -> Self {
        NotMap
    }
}

/// Answers at the top level only: the entries of a map are never looked at.
struct Probe;

/// Accepts and ignores the entries of a map.
struct Entries;

macro_rules! not_a_map {
    ($($method:ident($($ty:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $ty),*) -> Result<(), NotMap> { Err(NotMap) })*
    };
}

impl Serializer for Probe {
    type Ok = ();
    type Error = NotMap;
    type SerializeSeq = Impossible<(), NotMap>;
    type SerializeTuple = Impossible<(), NotMap>;
    type SerializeTupleStruct = Impossible<(), NotMap>;
    type SerializeTupleVariant = Entries;
    type SerializeMap = Entries;
    type SerializeStruct = Entries;
    type SerializeStructVariant = Entries;

    not_a_map!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), NotMap> {
        // `Some(x)` is written as `x`.
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), NotMap> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotMap> {
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotMap> {
        Err(NotMap)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotMap> {
        Err(NotMap)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotMap> {
        Err(NotMap)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Entries, NotMap> {
        Ok(Entries)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Entries, NotMap> {
        Ok(Entries)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Entries, NotMap> {
        Ok(Entries)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Entries, NotMap> {
        Ok(Entries)
    }
}

impl ser::SerializeTupleVariant for Entries {
    type Ok = ();
    type Error = NotMap;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), NotMap> {
        Ok(())
    }
    fn end(self) -> Result<(), NotMap> {
        Ok(())
    }
}

impl ser::SerializeMap for Entries {
    type Ok = ();
    type Error = NotMap;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), NotMap> {
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), NotMap> {
        Ok(())
    }
    fn end(self) -> Result<(), NotMap> {
        Ok(())
    }
}

macro_rules! ignore_fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Entries {
            type Ok = ();
            type Error = NotMap;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                _: &T,
            ) -> Result<(), NotMap> {
                Ok(())
            }
            fn end(self) -> Result<(), NotMap> {
                Ok(())
            }
        }
    )*};
}

ignore_fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    use super::serializes_to_map;

    #[derive(Serialize)]
    struct Point {
        x: i32,
    }

    #[derive(Serialize)]
    struct Wrapper(Point);

    #[derive(Serialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Pair(i32, i32),
        Rect { w: u32 },
    }

    /// Whether both encodings write `value` as a map, by its first byte.
    fn encoded_as_map<T: Serialize>(value: &T) -> bool {
        let packed = crate::domain::Encoding::MessagePack.encode(value).unwrap();
        let json = crate::domain::Encoding::Json.encode(value).unwrap();
        matches!(packed[0], 0x80..=0x8f | 0xde | 0xdf) && json[0] == b'{'
    }

    #[test]
    fn the_probe_agrees_with_both_encodings() {
        assert!(encoded_as_map(&Point { x: 1 }));
        assert!(encoded_as_map(&Wrapper(Point { x: 1 })));
        assert!(encoded_as_map(&Shape::Circle(1.0)));
        assert!(encoded_as_map(&Shape::Pair(1, 2)));
        assert!(encoded_as_map(&Shape::Rect { w: 1 }));
        assert!(!encoded_as_map(&Shape::Dot));
        assert!(!encoded_as_map(&vec![1]));
    }

    #[test]
    fn maps_and_structs_are_maps() {
        assert!(serializes_to_map(&Point { x: 1 }));
        assert!(serializes_to_map(&Wrapper(Point { x: 1 })));
        assert!(serializes_to_map(&Some(Point { x: 1 })));
        assert!(serializes_to_map(&json!({})));
        assert!(serializes_to_map(&json!({"a": [1, 2]})));
        assert!(serializes_to_map(&BTreeMap::<String, i32>::new()));
        assert!(serializes_to_map(&Shape::Circle(1.0)));
        assert!(serializes_to_map(&Shape::Pair(1, 2)));
        assert!(serializes_to_map(&Shape::Rect { w: 1 }));
    }

    #[test]
    fn everything_else_is_not() {
        assert!(!serializes_to_map(&()));
        assert!(!serializes_to_map(&42));
        assert!(!serializes_to_map(&f64::INFINITY));
        assert!(!serializes_to_map("hello"));
        assert!(!serializes_to_map(&vec![1, 2, 3]));
        assert!(!serializes_to_map(&(1, 2)));
        assert!(!serializes_to_map(&None::<Point>));
        assert!(!serializes_to_map(&json!(null)));
        assert!(!serializes_to_map(&json!([1, 2])));
        assert!(!serializes_to_map(&Shape::Dot));
    }
}
